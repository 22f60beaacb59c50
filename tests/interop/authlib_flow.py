#!/usr/bin/env python3
"""Interop test: an unmodified Authlib relying party against a real Latchkey server.

Runs the OIDC authorization-code flow (PKCE S256, nonce, state, RFC 9207 `iss`)
end to end, validates the ID token with Authlib's own JOSE/OIDC claim classes,
then exercises userinfo, refresh-token rotation and single-use codes.

Usage (from the repo root):  python3 tests/interop/authlib_flow.py
Env: LATCHKEY_BIN overrides the binary (default target/debug/latchkey).
The last line printed is always "N passed, M failed"; exit status is 0 only if M == 0.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlparse

import requests
import authlib
import authlib.deprecate

# Authlib 1.7+ flags authlib.jose as deprecated in favour of joserfc, but it is still
# the API a typical Authlib RP uses, which is what this test means to exercise.
# authlib.deprecate forces "always" for its warnings on import, hence the order here.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.jose import JsonWebKey, jwt
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from authlib.oidc.discovery import OpenIDProviderMetadata

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LATCHKEY_BIN = os.environ.get("LATCHKEY_BIN") or os.path.join(REPO_ROOT, "target/debug/latchkey")
PASSWORD = "correct horse battery staple"
SCOPE = "openid profile email offline_access"
HTTP_TIMEOUT = 15


class Abort(Exception):
    """A failure that later steps depend on; stops the run."""


class FlowError(Exception):
    """The simulated browser could not get from the authorize URL to the callback."""


class Checks:
    def __init__(self):
        self.passed, self.failed = [], []

    def check(self, cond, desc, detail=""):
        if cond:
            self.passed.append(desc)
            print(f"ok - {desc}", flush=True)
        else:
            self.failed.append(desc)
            print(f"FAIL - {desc}" + (f": {detail}" if detail else ""), flush=True)
        return bool(cond)

    def need(self, cond, desc, detail=""):
        if not self.check(cond, desc, detail):
            raise Abort(desc)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def latchkey(config, *args, stdin=None):
    return subprocess.run([LATCHKEY_BIN, *args, "--config", config], input=stdin,
                          capture_output=True, text=True, timeout=120)


def describe(resp):
    return f"HTTP {resp.status_code} {resp.url}: {resp.text[:500]!r}"


def json_error(resp):
    try:
        return resp.json().get("error")
    except ValueError:
        return None


class FormParser(HTMLParser):
    """Collects forms the way a browser would submit them (no JS, no CSS)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)  # also unescapes attribute values
        self.forms, self._form = [], None

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._form = {"method": a.get("method", "get").lower(), "action": a.get("action", ""),
                          "fields": {}, "allow": False}
            self.forms.append(self._form)
        elif self._form is None:
            return
        elif tag == "input" and a.get("name"):
            kind = a.get("type", "text").lower()
            # Submit-type inputs are only sent when clicked; unchecked boxes never are.
            if kind in ("submit", "button", "reset", "image"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            self._form["fields"][a["name"]] = a.get("value", "")
        elif tag == "button" and a.get("name") == "decision" and a.get("value") == "allow":
            self._form["allow"] = True

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None


def drive_browser(browser, auth_url, redirect_uri):
    """Follows redirects and submits login/consent forms until the RP callback.

    Returns (callback_url, trail of hops for diagnostics, whether a login form was seen).
    """
    url, trail, saw_login = auth_url, [], False
    resp = browser.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT)
    for _ in range(10):
        trail.append(f"{resp.request.method} {urlparse(url).path} -> {resp.status_code}")
        if resp.status_code in (301, 302, 303, 307, 308):
            location = resp.headers.get("Location", "")
            if location.startswith(redirect_uri):
                return location, trail, saw_login
            if not location:
                raise FlowError(f"redirect without Location: {describe(resp)}")
            url = urljoin(url, location)
            resp = browser.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT)
        elif resp.status_code == 200 and "<form" in resp.text.lower():
            parser = FormParser()
            parser.feed(resp.text)
            form = next((f for f in parser.forms if f["method"] == "post"), None)
            if form is None:
                raise FlowError(f"page has no POST form: {describe(resp)}")
            data = dict(form["fields"])
            if "username" in data:
                data["username"] = "alice"
            if "password" in data:
                data["password"] = PASSWORD
                saw_login = True
            if form["allow"]:
                data["decision"] = "allow"
            url = urljoin(url, form["action"]) if form["action"] else url
            resp = browser.post(url, data=data, allow_redirects=False, timeout=HTTP_TIMEOUT)
        else:
            raise FlowError(f"unexpected response: {describe(resp)}")
    raise FlowError(f"no callback after 10 steps; trail: {trail}")


def start_server(config, cert, port, log_file):
    proc = subprocess.Popen([LATCHKEY_BIN, "serve", "--config", config],
                            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline, last = time.monotonic() + 30, "no attempt yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc, f"server exited early with status {proc.returncode}"
        # The cert is written at startup; until then there is nothing to verify against.
        if os.path.exists(cert):
            try:
                r = requests.get(f"https://127.0.0.1:{port}/healthz", verify=cert, timeout=2)
                if r.status_code == 200:
                    return proc, None
                last = f"HTTP {r.status_code}"
            except requests.RequestException as e:
                last = repr(e)
        time.sleep(0.2)
    return proc, f"healthz not 200 within 30 s (last: {last})"


def run_flow(c, tmp, log_file):
    port = free_port()
    issuer = f"https://127.0.0.1:{port}"
    config = os.path.join(tmp, "latchkey.toml")
    cert = os.path.join(tmp, "data", "tls", "cert.pem")
    with open(config, "w") as f:
        # json.dumps yields valid TOML basic strings, escaping included.
        f.write(f'issuer = {json.dumps(issuer)}\nlisten = "127.0.0.1:{port}"\n'
                f'data_dir = {json.dumps(os.path.join(tmp, "data"))}\n'
                "[password]\nmemory_kib = 19456\niterations = 2\n")

    # Server stopped: the CLI opens the database directly.
    r = latchkey(config, "user", "add", "alice", "--email", "alice@example.com", "--given-name",
                 "Alice", "--family-name", "Liddell", "--password-stdin", stdin=PASSWORD + "\n")
    c.need(r.returncode == 0, "cli: user add alice (server stopped)",
           f"exit {r.returncode}; stdout={r.stdout[-500:]!r} stderr={r.stderr[-500:]!r}")

    proc, err = start_server(config, cert, port, log_file)
    try:
        c.need(err is None, "server: /healthz 200 over TLS verified against data/tls/cert.pem", err)
        exercise_server(c, config, cert, issuer)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def exercise_server(c, config, cert, issuer):
    # Server running: the CLI goes through the admin socket.
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    r = latchkey(config, "client", "add", "--name", "Interop", "--redirect-uri", redirect_uri,
                 *[a for s in SCOPE.split() for a in ("--scope", s)],
                 "--grant-type", "authorization_code", "--grant-type", "refresh_token", "--json")
    try:
        client = json.loads(r.stdout)
        client_id, client_secret = client["client_id"], client["client_secret"]
    except (ValueError, KeyError, TypeError):
        client_id = None
    c.need(r.returncode == 0 and client_id, "cli: client add --json (server running) gives id+secret",
           f"exit {r.returncode}; stdout={r.stdout[-500:]!r} stderr={r.stderr[-500:]!r}")

    # --- Discovery ---
    resp = requests.get(f"{issuer}/.well-known/openid-configuration", verify=cert, timeout=HTTP_TIMEOUT)
    c.need(resp.status_code == 200, "discovery: 200", describe(resp))
    meta = resp.json()
    c.check(meta.get("issuer") == issuer, "discovery: issuer matches exactly", repr(meta.get("issuer")))
    for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        c.need(str(meta.get(key, "")).startswith("https://"), f"discovery: {key} present and https",
               repr(meta.get(key)))
    try:
        OpenIDProviderMetadata(meta).validate()
        c.check(True, "discovery: passes Authlib OpenIDProviderMetadata.validate()")
    except ValueError as e:
        c.check(False, "discovery: passes Authlib OpenIDProviderMetadata.validate()", str(e))

    # --- Authorization request built by Authlib ---
    session = OAuth2Session(client_id, client_secret, scope=SCOPE, redirect_uri=redirect_uri,
                            code_challenge_method="S256", token_endpoint_auth_method="client_secret_basic",
                            leeway=0)  # default 60 s would call short-lived tokens expired client-side
    session.verify = cert
    session.trust_env = False  # else REQUESTS_CA_BUNDLE etc. silently override .verify
    raw_token_responses = []  # Authlib hides the HTTP response; keep it for header checks.
    for hook in ("access_token_response", "refresh_token_response"):
        session.register_compliance_hook(hook, lambda resp: raw_token_responses.append(resp) or resp)
    nonce, verifier = generate_token(20), generate_token(48)
    auth_url, state = session.create_authorization_url(meta["authorization_endpoint"],
                                                       nonce=nonce, code_verifier=verifier)

    browser = requests.Session()
    browser.verify, browser.trust_env = cert, False
    try:
        callback, trail, saw_login = drive_browser(browser, auth_url, redirect_uri)
    except FlowError as e:
        c.need(False, "browser: login and consent lead to redirect_uri", str(e))
    c.check(saw_login, "browser: login form filled and submitted", f"trail: {trail}")
    c.check(True, f"browser: login and consent lead to redirect_uri ({'; '.join(trail)})")
    params = {k: v[0] for k, v in parse_qs(urlparse(callback).query).items()}
    c.need("code" in params, "callback: has code", callback)
    c.need(params.get("state") == state, "callback: state round-trips", repr(params.get("state")))
    c.check(params.get("iss") == issuer, "callback: iss equals issuer (RFC 9207)", repr(params.get("iss")))

    # --- Token exchange via Authlib (Basic auth, PKCE verifier, state re-checked) ---
    try:
        token = session.fetch_token(meta["token_endpoint"], authorization_response=callback,
                                    code_verifier=verifier, state=state, timeout=HTTP_TIMEOUT)
    except Exception as e:  # Authlib raises OAuthError with the server's error body
        last = describe(raw_token_responses[-1]) if raw_token_responses else ""
        c.need(False, "token: code exchange succeeds", f"{e!r} {last}")
    c.check(True, "token: code exchange succeeds")
    c.check("no-store" in raw_token_responses[-1].headers.get("Cache-Control", ""),
            "token: response has Cache-Control: no-store (RFC 6749 5.1)",
            repr(raw_token_responses[-1].headers.get("Cache-Control")))
    c.check(str(token.get("token_type", "")).lower() == "bearer", "token: token_type Bearer",
            repr(token.get("token_type")))
    c.check(isinstance(token.get("expires_in"), int) and token["expires_in"] > 0, "token: expires_in > 0",
            repr(token.get("expires_in")))
    missing = [k for k in ("id_token", "access_token", "refresh_token") if not token.get(k)]
    c.need(not missing, "token: id_token, access_token and refresh_token present", f"missing {missing}")

    # --- ID token, validated with Authlib's JOSE and OIDC claim rules ---
    resp = requests.get(meta["jwks_uri"], verify=cert, timeout=HTTP_TIMEOUT)
    c.need(resp.status_code == 200, "jwks: 200", describe(resp))
    jwks = resp.json()
    key_set = JsonWebKey.import_key_set(jwks)
    id_claims = validate_id_token(c, token["id_token"], key_set, jwks, issuer, client_id, nonce,
                                  token["access_token"], "id_token") or {}
    sub = id_claims.get("sub")
    if id_claims:  # claims of an unverified token prove nothing, so only check verified ones
        c.check(isinstance(id_claims.get("auth_time"), int), "id_token: auth_time present",
                repr(id_claims.get("auth_time")))

    # --- Userinfo: Authlib attaches the Bearer token ---
    try:
        resp = session.get(meta["userinfo_endpoint"], timeout=HTTP_TIMEOUT)
        c.check(resp.status_code == 200, "userinfo: 200", describe(resp))
        info = resp.json()
    except Exception as e:  # Authlib client-side token errors, or a non-JSON body
        c.check(False, "userinfo: 200 with JSON body", repr(e))
        info = {}
    if sub:
        c.check(info.get("sub") == sub, "userinfo: sub matches ID token", f"{info.get('sub')!r} vs {sub!r}")
    c.check(info.get("email") == "alice@example.com", "userinfo: email", repr(info.get("email")))
    c.check(info.get("given_name") == "Alice", "userinfo: given_name", repr(info.get("given_name")))

    # --- Refresh with rotation ---
    old_refresh, old_access = token["refresh_token"], token["access_token"]
    try:
        new = dict(session.refresh_token(meta["token_endpoint"], refresh_token=old_refresh,
                                         timeout=HTTP_TIMEOUT))
        refreshed = True
    except Exception as e:
        refreshed = c.check(False, "refresh: grant succeeds", repr(e))
    if refreshed:
        # Authlib silently re-inserts the old refresh token if none came back; read the wire.
        raw = raw_token_responses[-1].json()
        c.check(True, "refresh: grant succeeds")
        c.check(raw.get("access_token") and raw["access_token"] != old_access,
                "refresh: new access_token issued", repr(raw.get("access_token")))
        c.check(raw.get("refresh_token") and raw["refresh_token"] != old_refresh,
                "refresh: refresh_token rotated", repr(raw.get("refresh_token")))
        if raw.get("id_token"):
            # No nonce check: per OIDC Core 12.2 a refreshed ID token need not carry one.
            new_claims = validate_id_token(c, raw["id_token"], key_set, jwks, issuer, client_id, None,
                                           new["access_token"], "refreshed id_token") or {}
            if sub and new_claims:
                c.check(new_claims.get("sub") == sub, "refresh: new id_token has same sub",
                        f"{new_claims.get('sub')!r} vs {sub!r}")
            # OIDC Core 12.2: auth_time stays the time of the original login.
            if "auth_time" in new_claims and id_claims:
                c.check(new_claims["auth_time"] == id_claims.get("auth_time"),
                        "refresh: new id_token keeps original auth_time",
                        f"{new_claims['auth_time']!r} vs {id_claims.get('auth_time')!r}")
    resp = requests.post(meta["token_endpoint"], auth=(client_id, client_secret), verify=cert,
                         timeout=HTTP_TIMEOUT, data={"grant_type": "refresh_token", "refresh_token": old_refresh})
    c.check(resp.status_code == 400 and json_error(resp) == "invalid_grant",
            "refresh: old refresh token rejected with 400 invalid_grant", describe(resp))

    # --- Authorization codes are single use ---
    resp = requests.post(meta["token_endpoint"], auth=(client_id, client_secret), verify=cert,
                         timeout=HTTP_TIMEOUT,
                         data={"grant_type": "authorization_code", "code": params["code"],
                               "redirect_uri": redirect_uri, "code_verifier": verifier})
    c.check(resp.status_code == 400 and json_error(resp) == "invalid_grant",
            "code: reused code rejected with 400 invalid_grant", describe(resp))


def validate_id_token(c, id_token, key_set, jwks, issuer, client_id, nonce, access_token, label):
    """Signature + OIDC Core 3.1.3.7 checks via Authlib; returns the claims (or None)."""
    options = {"iss": {"essential": True, "value": issuer}, "aud": {"essential": True, "value": client_id}}
    params = {"client_id": client_id, "access_token": access_token}
    if nonce is not None:
        options["nonce"] = {"essential": True, "value": nonce}
        params["nonce"] = nonce
    what = f"{label}: signature and claims valid (iss, aud, exp, iat, {'nonce, ' if nonce else ''}at_hash)"
    try:
        claims = jwt.decode(id_token, key_set, claims_cls=CodeIDToken, claims_options=options,
                            claims_params=params)
        claims.validate(leeway=60)
    except Exception as e:
        c.check(False, what, repr(e))
        return None
    c.check(True, what)
    c.check(claims.header.get("alg") == "RS256", f"{label}: JWS alg is RS256", repr(claims.header))
    kids = [k.get("kid") for k in jwks.get("keys", [])]
    c.check(claims.header.get("kid") in kids and claims.header.get("kid"), f"{label}: kid is in JWKS",
            f"{claims.header.get('kid')!r} not in {kids}")
    if "at_hash" not in claims:
        print(f"note - {label}: no at_hash (optional for the code flow, so not verified)")
    c.check(isinstance(claims.get("sub"), str) and claims["sub"], f"{label}: sub non-empty", repr(claims.get("sub")))
    return dict(claims)


def main():
    print(f"authlib {authlib.__version__}, requests {requests.__version__}, binary {LATCHKEY_BIN}")
    if not os.access(LATCHKEY_BIN, os.X_OK):
        print(f"FAIL - latchkey binary not found or not executable: {LATCHKEY_BIN}")
        print("0 passed, 1 failed")
        return 1
    c = Checks()
    tmp = tempfile.mkdtemp(prefix="latchkey-interop-")
    log_path = os.path.join(tmp, "server.log")
    try:
        with open(log_path, "w") as log_file:
            run_flow(c, tmp, log_file)
    except Abort as e:
        print(f"aborted: later checks depend on '{e}'")
        if not c.failed:  # never let an abort look like success
            c.check(False, "run completed", str(e))
    except Exception as e:  # an unexpected crash is a failed run, not a traceback-only exit
        traceback.print_exc()
        c.check(False, "no unexpected exception", repr(e))
    if c.failed:
        if os.path.exists(log_path):
            with open(log_path) as f:
                print(f"----- server log ({log_path}) -----\n{f.read()[-8000:]}\n----- end of log -----")
        print(f"data kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nSummary (authlib {authlib.__version__}):")
    for d in c.passed:
        print(f"  passed: {d}")
    for d in c.failed:
        print(f"  FAILED: {d}")
    print(f"{len(c.passed)} passed, {len(c.failed)} failed")
    return 0 if not c.failed else 1


if __name__ == "__main__":
    sys.exit(main())
