//! The router: [`App::respond`] and the checks and headers around each route's handler.

use std::sync::Arc;

use hyper::header;
use hyper::{Method, StatusCode};

use crate::config::TlsMode;

use super::response::{self, Resp};
use super::{
    App, Req, account, admin_pages, authorize, device, introspection, login, logout, mail, par,
    passkeys, routes, signin, token, userinfo, well_known,
};

impl App {
    /// Routes a request by [`routes::TABLE`]. Never panics on input; unknown paths get
    /// 404, known paths with another method 405 with `Allow`.
    pub async fn respond(self: &Arc<Self>, req: Req) -> Resp {
        self.respond_labelled(req).await.0
    }

    /// [`App::respond`], with the metrics label of the route that answered, in the
    /// request's language (SPEC §12): an application's `ui_locales`, the switcher's
    /// `lang` (both remembered in a cookie for the pages that follow), the cookie, then
    /// `Accept-Language`, then `[ui] default_language`.
    pub(super) async fn respond_labelled(self: &Arc<Self>, req: Req) -> (Resp, &'static str) {
        let q = req.query_params();
        let asked = q.get_lenient("ui_locales").or(q.get_lenient("lang"));
        let cookie = req.cookie(&self.cookie_name("lang"));
        let lang = crate::pages::i18n::choose(
            q.get_lenient("ui_locales"),
            q.get_lenient("lang").or(cookie.as_deref()),
            req.header(header::ACCEPT_LANGUAGE),
            self.config.default_language,
        );
        // A language the request asked for by name is kept for the pages that follow
        // (the sign-in page after the authorization request).
        let remember = asked.is_some() && cookie.as_deref() != Some(lang);
        let (resp, label) = crate::pages::LANG
            .scope(lang, self.respond_routed(req))
            .await;
        if remember {
            let c = self.set_cookie("lang", lang, Some(30 * 24 * 3600), "Lax");
            return (response::with_header(resp, "set-cookie", &c), label);
        }
        (resp, label)
    }

    async fn respond_routed(self: &Arc<Self>, mut req: Req) -> (Resp, &'static str) {
        let now = req.now_ms.div_euclid(1000);
        let Some(entry) = routes::find(&req.path) else {
            let resp = self.finish(None, response::plain(StatusCode::NOT_FOUND, "not found"));
            return (resp, routes::OTHER);
        };
        // RFC 9110 §9.3.2: HEAD is GET without the body (hyper sends no body for HEAD).
        if req.method == Method::HEAD && entry.allows(&Method::GET) {
            req.method = Method::GET;
        }
        let resp = if req.method == Method::OPTIONS && entry.cors {
            well_known::preflight(entry.allow_header())
        } else if !entry.allows(&req.method) {
            response::with_header(
                response::plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
                "allow",
                entry.allow_header(),
            )
        } else if req.method == Method::POST && entry.page && self.cross_site(&req) {
            self.error_page(
                StatusCode::FORBIDDEN,
                "Request refused",
                "This form was sent from another site. Open the page here and try again.",
            )
        } else {
            self.dispatch(entry.route, &req, now).await
        };
        (self.finish(Some(entry), resp), entry.label)
    }

    /// Calls the handler of a route whose method is allowed.
    async fn dispatch(self: &Arc<Self>, route: routes::Route, req: &Req, now: i64) -> Resp {
        use routes::Route as R;
        let get = req.method == Method::GET;
        match route {
            R::Discovery => well_known::discovery(self, now),
            R::Jwks => well_known::jwks(self),
            R::Health => well_known::health(self),
            R::Metrics => well_known::metrics(self, req, now),
            R::StyleCss => response::asset("text/css; charset=utf-8", crate::pages::STYLE_CSS),
            R::FormPostJs => {
                response::asset("text/javascript; charset=utf-8", crate::pages::FORM_POST_JS)
            }
            R::AppJs => response::asset("text/javascript; charset=utf-8", crate::pages::APP_JS),
            R::Logo => match &self.config.logo {
                Some(logo) => response::set_header(
                    response::bytes(logo.content_type, logo.bytes.to_vec()),
                    "cache-control",
                    "public, max-age=3600",
                ),
                None => response::plain(StatusCode::NOT_FOUND, "not found"),
            },
            R::Authorize => authorize::authorize(self, req, now).await,
            R::Resume => authorize::resume(self, req, now).await,
            R::Token => token::token(self, req, now).await,
            R::Userinfo => userinfo::userinfo(self, req, now),
            R::Revoke => introspection::revoke(self, req, now).await,
            R::Introspect => introspection::introspect(self, req, now).await,
            R::Par => par::push(self, req, now).await,
            R::DeviceAuthorization => device::authorization(self, req, now).await,
            R::Device if get => device::page(self, req, now),
            R::Device => device::submit(self, req, now),
            R::EndSession => logout::end_session(self, req, now),
            R::Login if get => login::login_page(self, req, now),
            R::Login => login::login_submit(self, req, now).await,
            R::SecondFactor if get => signin::code_page(self, req, now),
            R::SecondFactor => signin::code_submit(self, req, now),
            R::SecondFactorKey => passkeys::second_factor_start(self, req, now),
            R::Passkey if req.path.ends_with("/start") => passkeys::signin_start(self, req, now),
            R::Passkey => login::passkey_submit(self, req, now).await,
            R::NewPassword if get => signin::new_password_page(self, req, now),
            R::NewPassword => signin::new_password_submit(self, req, now).await,
            // With a token: the link of a reset mail or an administrator; without one:
            // "Forgot your password?".
            R::Reset if get && req.query_params().get_lenient("token").is_some() => {
                signin::reset_page(self, req, now)
            }
            R::Reset if get => mail::request_page(self, req, now),
            R::Reset if req.form().get_lenient("token").is_some() => {
                signin::reset_submit(self, req, now).await
            }
            R::Reset => mail::request_submit(self, req, now),
            R::Invite if get => mail::invite_page(self, req, now),
            R::Invite => mail::invite_submit(self, req, now).await,
            R::Verify if get => mail::verify_page(self, req, now),
            R::Verify => mail::verify_submit(self, req, now),
            R::Consent if get => login::consent_page(self, req, now),
            R::Consent => login::consent_submit(self, req, now),
            R::Setup if get => login::setup_page(self, req, now),
            R::Setup => login::setup_submit(self, req, now).await,
            R::Logout if get => logout::logout_page(self, req, now),
            R::Logout => logout::logout_submit(self, req, now),
            R::Home => login::home(self, req, now),
            R::Account => account::route(self, req, now).await,
            R::Admin => admin_pages::route(self, req, now).await,
        }
    }

    /// SPEC §8: whether a browser says this request came from another site: by
    /// `Sec-Fetch-Site` where sent (anything but same-origin, or `none` for a typed URL),
    /// else by an `Origin` other than the issuer's. `Origin: null` says nothing (the
    /// Fetch standard sends it for a POST from a page whose referrer policy is
    /// no-referrer, as Latchkey's pages are, in browsers without `Sec-Fetch-Site`).
    /// Requests without either (non-browser clients, old browsers) still need their
    /// CSRF token, as every request does.
    fn cross_site(&self, req: &Req) -> bool {
        if let Some(site) = req.header("sec-fetch-site") {
            return !matches!(site, "same-origin" | "none");
        }
        match req.header(header::ORIGIN) {
            None | Some("null") => false,
            Some(origin) => url::Url::parse(&self.config.issuer)
                .map(|u| u.origin().ascii_serialization())
                .is_ok_and(|own| own != origin),
        }
    }

    /// Headers every response gets: HSTS when served over TLS, CORS on the routes that
    /// relying parties call from browsers with a bearer token (never with cookies).
    fn finish(&self, route: Option<&routes::Entry>, mut resp: Resp) -> Resp {
        let h = resp.headers_mut();
        if self.config.tls != TlsMode::Off && self.secure() {
            h.insert(
                header::STRICT_TRANSPORT_SECURITY,
                header::HeaderValue::from_static("max-age=31536000"),
            );
        }
        if route.is_some_and(|r| r.cors) {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                header::HeaderValue::from_static("*"),
            );
        }
        resp
    }
}
