//! What concerns a browser: [`SignedIn`], sessions, cookies, CSRF, form and error pages.

use hyper::StatusCode;

use crate::model::{Consent, Session, User};
use crate::oidc::params::Params;
use crate::store::StoreError;

use super::response::{self, Resp};
use super::{App, Macs, Req};

/// A signed-in browser: the stored session (with its hash) and its user.
pub struct SignedIn {
    pub hash: String,
    pub session: Session,
    pub user: User,
}

impl SignedIn {
    /// Whether the session signed in, or confirmed the password, within the last
    /// `window` seconds: sensitive changes need no password then.
    pub fn fresh(&self, window: i64, now: i64) -> bool {
        self.session.auth_time.max(self.session.reauth_at) >= now - window
    }
}

impl App {
    pub(super) fn secure(&self) -> bool {
        self.config.issuer.starts_with("https://")
    }

    /// `__Host-` cookies need Secure; an http issuer (tests, local trials) uses plain names.
    pub fn cookie_name(&self, base: &str) -> String {
        if self.secure() {
            format!("__Host-latchkey_{base}")
        } else {
            format!("latchkey_{base}")
        }
    }

    /// A `Set-Cookie` value: HttpOnly, Path=/, no Domain, Secure when the issuer is https.
    pub fn set_cookie(
        &self,
        base: &str,
        value: &str,
        max_age: Option<i64>,
        same_site: &str,
    ) -> String {
        let mut c = format!(
            "{}={value}; Path=/; HttpOnly; SameSite={same_site}",
            self.cookie_name(base)
        );
        if self.secure() {
            c.push_str("; Secure");
        }
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        c
    }

    /// The valid SSO session of this browser, if any.
    pub fn signed_in(&self, req: &Req, now: i64) -> Result<Option<SignedIn>, StoreError> {
        Ok(self.session_of(req, now, None)?.map(|(s, _)| s))
    }

    /// [`App::signed_in`], with the user's consent for `client_id` read alongside.
    pub fn signed_in_with_consent(
        &self,
        req: &Req,
        now: i64,
        client_id: &str,
    ) -> Result<Option<(SignedIn, Option<Consent>)>, StoreError> {
        self.session_of(req, now, Some(client_id))
    }

    fn session_of(
        &self,
        req: &Req,
        now: i64,
        consent_for: Option<&str>,
    ) -> Result<Option<(SignedIn, Option<Consent>)>, StoreError> {
        let Some(raw) = req.cookie(&self.cookie_name("session")) else {
            return Ok(None);
        };
        let hash = crate::keys::token_hash(&raw);
        let Some(found) = self.store.session_context(&hash, consent_for)? else {
            return Ok(None);
        };
        if !found.session.alive(now) {
            return Ok(None);
        }
        match found.user {
            Some(user) if !user.disabled => Ok(Some((
                SignedIn {
                    hash,
                    session: found.session,
                    user,
                },
                found.consent,
            ))),
            _ => Ok(None),
        }
    }

    /// Extends the idle lifetime of a session in use (never past the absolute limit).
    /// Also records `client` as a participant, to be told when the session ends.
    pub fn touch_session(
        &self,
        s: &SignedIn,
        client: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let l = &self.config.lifetimes;
        let session = &s.session;
        let known = client.is_none_or(|c| session.clients.iter().any(|x| x == c));
        // A session used moments ago is not written again (a write per authorization
        // request is the costliest part of an SSO sign-in): its idle expiry is then up to
        // a tenth of the idle lifetime (at most a minute) early.
        let step = (l.session_idle / 10).min(60);
        if known && now - session.last_seen < step {
            return Ok(());
        }
        // Edited as stored, so a session ended or moved meanwhile is not written back.
        let expires = (now + l.session_idle).min(session.created_at + l.session_absolute);
        self.store.update_session(&s.hash, &|stored| {
            if let Some(c) = client
                && !stored.clients.iter().any(|x| x == c)
            {
                stored.clients.push(c.to_string());
            }
            stored.last_seen = now;
            stored.expires_at = expires;
        })?;
        Ok(())
    }

    /// CSRF: a per-browser random cookie, and in each form its HMAC under the server key.
    /// Returns the form token and, when the cookie is new, the `Set-Cookie` to send.
    pub fn csrf_token(&self, req: &Req) -> (String, Option<String>) {
        match req
            .cookie(&self.cookie_name("csrf"))
            .filter(|c| c.len() == 43)
        {
            Some(c) => (self.macs.csrf.tag(&c), None),
            None => {
                let c = crate::clock::random_token();
                (
                    self.macs.csrf.tag(&c),
                    Some(self.set_cookie("csrf", &c, None, "Strict")),
                )
            }
        }
    }

    /// The keys for trusted-browser and known-browser cookies (each its own).
    pub fn macs(&self) -> &Macs {
        &self.macs
    }

    /// A page with a form: `ctx` gets the CSRF token, and the response the CSRF cookie
    /// when the browser has none yet.
    pub fn form_page(
        &self,
        req: &Req,
        template: &str,
        mut ctx: serde_json::Value,
        status: StatusCode,
    ) -> Resp {
        let (csrf, cookie) = self.csrf_token(req);
        ctx["csrf"] = serde_json::Value::String(csrf);
        let resp = response::html(status, self.pages.render(template, &ctx));
        match cookie {
            Some(c) => response::with_header(resp, "set-cookie", &c),
            None => resp,
        }
    }

    pub fn csrf_ok(&self, req: &Req, form: &Params) -> bool {
        match (
            req.cookie(&self.cookie_name("csrf")),
            form.get_lenient("csrf"),
        ) {
            (Some(cookie), Some(token)) => self.macs.csrf.verify(&cookie, token),
            _ => false,
        }
    }
}
