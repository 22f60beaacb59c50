// Interoperability: panva's openid-client (v6, on oauth4webapi) completes the
// authorization-code flow with PKCE against a running Latchkey, refreshes, reads
// UserInfo and validates the ID token its own strict way (RFC 9207 iss, nonce, at_hash
// when present, JWKS signature). Usage:
//   node openid_client_flow.mjs ISSUER CA_FILE CLIENT_ID CLIENT_SECRET REDIRECT_URI USER PASSWORD
// The CA file is trusted through NODE_EXTRA_CA_CERTS (set by the caller). Prints
// "N passed, M failed" last.
import * as client from 'openid-client';

const [issuer, , clientId, clientSecret, redirectUri, username, password] = process.argv.slice(2);
let passed = 0;
let failed = 0;
const check = (ok, what) => {
  if (ok) { passed++; console.log(`ok - ${what}`); } else { failed++; console.log(`FAIL - ${what}`); }
};

// A tiny browser: follows redirects, fills the login and consent forms, keeps cookies.
const jar = new Map();
async function go(url, init = {}) {
  const headers = { ...(init.headers || {}), cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') };
  const r = await fetch(url, { ...init, headers, redirect: 'manual' });
  for (const c of r.headers.getSetCookie()) {
    const [kv] = c.split(';');
    const i = kv.indexOf('=');
    jar.set(kv.slice(0, i), kv.slice(i + 1));
  }
  return r;
}
const hidden = (html, name) => {
  const m = html.match(new RegExp(`name="${name}" value="([^"]*)"`));
  return m ? m[1].replaceAll('&#x2f;', '/').replaceAll('&amp;', '&') : undefined;
};
async function browse(start) {
  let r = await go(start);
  for (let i = 0; i < 12; i++) {
    if (r.status === 302 || r.status === 303) {
      const loc = new URL(r.headers.get('location'), issuer).href;
      if (loc.startsWith(redirectUri)) return loc;
      r = await go(loc);
      continue;
    }
    const html = await r.text();
    const form = new URLSearchParams();
    for (const f of ['csrf', 'interaction', 'next']) { const v = hidden(html, f); if (v !== undefined) form.set(f, v); }
    let action;
    if (html.includes('name="password"')) { form.set('username', username); form.set('password', password); action = '/login'; }
    else if (html.includes('name="decision"')) { form.set('decision', 'allow'); action = '/consent'; }
    else throw new Error(`unexpected page ${r.status}: ${html.slice(0, 200)}`);
    r = await go(new URL(action, issuer).href, {
      method: 'POST', body: form.toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
  }
  throw new Error('too many steps');
}

const config = await client.discovery(new URL(issuer), clientId, clientSecret);
check(config.serverMetadata().issuer === issuer, 'discovery: issuer matches');
const verifier = client.randomPKCECodeVerifier();
const challenge = await client.calculatePKCECodeChallenge(verifier);
const nonce = client.randomNonce();
const state = client.randomState();
const url = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri, scope: 'openid profile email offline_access', code_challenge: challenge,
  code_challenge_method: 'S256', nonce, state,
});
const callback = await browse(url.href);
check(true, 'browser: sign-in and consent lead back to the client');
const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
  pkceCodeVerifier: verifier, expectedNonce: nonce, expectedState: state, idTokenExpected: true,
});
check(tokens.token_type.toLowerCase() === 'bearer', 'token: Bearer');
const claims = tokens.claims();
check(Boolean(claims && claims.sub), 'id_token: validated by openid-client (signature, iss, aud, nonce, iat, exp)');
const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
check(info.email === `${username}@example.com`, 'userinfo: email, sub checked against the ID token');
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
check(refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token, 'refresh: rotated refresh token');
check(refreshed.claims().sub === claims.sub, 'refresh: same subject in the new ID token');
const intro = await client.tokenIntrospection(config, refreshed.access_token);
check(intro.active === true && intro.client_id === clientId, 'introspection: active');
await client.tokenRevocation(config, refreshed.refresh_token);
const after = await client.tokenIntrospection(config, refreshed.access_token);
check(after.active === false, 'revocation: the refresh token took its access token with it');
const endSession = client.buildEndSessionUrl(config, { id_token_hint: refreshed.id_token });
check(endSession.href.startsWith(`${issuer}/api/v1/oauth/logout`), 'logout: end_session_endpoint used');
console.log(`openid-client ${(await import('openid-client/package.json', { with: { type: 'json' } })).default.version}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
