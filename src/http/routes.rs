//! The route table: every path Latchkey answers, with its methods, whether relying
//! parties may call it from a browser with a bearer token (CORS), whether it is a page
//! whose POSTs act for the signed-in browser (cross-site POSTs refused), and the label its
//! requests carry in the metrics. The router, the 405 answers with their `Allow` header,
//! the CORS headers and the metrics all read this one list.

use hyper::Method;

use crate::oidc::discovery::paths;

/// What a request is for, once its path is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Discovery,
    Jwks,
    Health,
    Metrics,
    StyleCss,
    FormPostJs,
    AppJs,
    Logo,
    Authorize,
    Resume,
    Token,
    Userinfo,
    Revoke,
    Introspect,
    Par,
    DeviceAuthorization,
    Device,
    EndSession,
    Login,
    SecondFactor,
    /// Signing in with a passkey: `/login/passkey/start` and `/login/passkey`.
    Passkey,
    /// A security key as the second factor: its options (`/login/2fa/key`).
    SecondFactorKey,
    NewPassword,
    Reset,
    /// Accepting an invitation (SPEC §12).
    Invite,
    /// Proving an email address.
    Verify,
    Consent,
    Setup,
    Logout,
    Home,
    /// `/account` and below.
    Account,
    /// `/admin` and below.
    Admin,
}

const GET: u8 = 1;
const POST: u8 = 2;
const BOTH: u8 = GET | POST;

/// One line of the table.
#[derive(Debug)]
pub struct Entry {
    pub route: Route,
    /// The path and its aliases; with `subtree`, also every path below them.
    paths: &'static [&'static str],
    subtree: bool,
    methods: u8,
    /// Called by relying parties from browsers with a bearer token (never cookies).
    pub cors: bool,
    /// A page whose POSTs act for the signed-in browser.
    pub page: bool,
    /// The metrics label (a fixed set, so hostile paths cannot grow the series).
    pub label: &'static str,
}

const fn entry(
    route: Route,
    paths: &'static [&'static str],
    methods: u8,
    label: &'static str,
) -> Entry {
    Entry {
        route,
        paths,
        subtree: false,
        methods,
        cors: false,
        page: false,
        label,
    }
}

const fn api(
    route: Route,
    paths: &'static [&'static str],
    methods: u8,
    label: &'static str,
) -> Entry {
    Entry {
        cors: true,
        ..entry(route, paths, methods, label)
    }
}

const fn page(
    route: Route,
    paths: &'static [&'static str],
    methods: u8,
    label: &'static str,
) -> Entry {
    Entry {
        page: true,
        ..entry(route, paths, methods, label)
    }
}

const fn pages_below(route: Route, path: &'static [&'static str], label: &'static str) -> Entry {
    Entry {
        subtree: true,
        ..page(route, path, BOTH, label)
    }
}

/// Every route. Authorization and end-session requests come from relying parties' pages
/// on other sites by design, so they are not `page`s.
pub const TABLE: &[Entry] = &[
    api(
        Route::Discovery,
        &[paths::OIDC_DISCOVERY, paths::OAUTH_METADATA],
        GET,
        "discovery",
    ),
    api(Route::Jwks, &[paths::JWKS], GET, "jwks"),
    entry(Route::Health, &["/healthz"], GET, "healthz"),
    entry(Route::Metrics, &["/metrics"], GET, "metrics"),
    entry(Route::StyleCss, &["/assets/style.css"], GET, "assets"),
    entry(Route::FormPostJs, &["/assets/form_post.js"], GET, "assets"),
    entry(Route::AppJs, &["/assets/app.js"], GET, "assets"),
    entry(Route::Logo, &["/assets/logo"], GET, "assets"),
    entry(
        Route::Authorize,
        &[paths::AUTHORIZE, paths::AUTHORIZE_ALIAS],
        BOTH,
        "authorize",
    ),
    entry(Route::Resume, &[paths::AUTHORIZE_RESUME], GET, "authorize"),
    api(
        Route::Token,
        &[paths::TOKEN, paths::TOKEN_ALIAS],
        POST,
        "token",
    ),
    api(Route::Userinfo, &[paths::USERINFO], BOTH, "userinfo"),
    entry(Route::Revoke, &[paths::REVOKE], POST, "revoke"),
    entry(Route::Introspect, &[paths::INTROSPECT], POST, "introspect"),
    entry(Route::Par, &[paths::PAR], POST, "par"),
    entry(
        Route::DeviceAuthorization,
        &[paths::DEVICE_AUTHORIZATION],
        POST,
        "device",
    ),
    page(Route::Device, &["/device"], BOTH, "device"),
    entry(Route::EndSession, &[paths::END_SESSION], BOTH, "logout"),
    page(Route::Login, &["/login"], BOTH, "login"),
    page(Route::SecondFactor, &["/login/2fa"], BOTH, "login"),
    page(Route::SecondFactorKey, &["/login/2fa/key"], POST, "login"),
    page(
        Route::Passkey,
        &["/login/passkey", "/login/passkey/start"],
        POST,
        "login",
    ),
    page(Route::NewPassword, &["/login/password"], BOTH, "login"),
    page(Route::Reset, &["/reset"], BOTH, "reset"),
    page(Route::Invite, &["/invite"], BOTH, "invite"),
    page(Route::Verify, &["/verify"], BOTH, "verify"),
    page(Route::Consent, &["/consent"], BOTH, "consent"),
    page(Route::Setup, &["/setup"], BOTH, "setup"),
    page(Route::Logout, &["/logout"], BOTH, "logout"),
    entry(Route::Home, &["/"], GET, "home"),
    pages_below(Route::Account, &["/account"], "account"),
    pages_below(Route::Admin, &["/admin"], "admin"),
];

impl Entry {
    fn matches(&self, path: &str) -> bool {
        self.paths.iter().any(|p| {
            path.strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || (self.subtree && rest.starts_with('/')))
        })
    }

    /// Whether the route answers `method` (OPTIONS is answered for CORS routes).
    pub fn allows(&self, method: &Method) -> bool {
        (*method == Method::GET && self.methods & GET != 0)
            || (*method == Method::POST && self.methods & POST != 0)
    }

    /// The `Allow` header of a 405 (RFC 9110 §15.5.6), and the methods a CORS preflight
    /// names. HEAD goes with GET (§9.1: a server supports both).
    pub fn allow_header(&self) -> &'static str {
        match (self.methods, self.cors) {
            (GET, false) => "GET, HEAD",
            (POST, false) => "POST",
            (_, false) => "GET, HEAD, POST",
            (GET, true) => "GET, HEAD, OPTIONS",
            (POST, true) => "POST, OPTIONS",
            (_, true) => "GET, HEAD, POST, OPTIONS",
        }
    }
}

/// The route of a path, if any.
pub fn find(path: &str) -> Option<&'static Entry> {
    TABLE.iter().find(|e| e.matches(path))
}

/// The metrics label of requests that match no route.
pub const OTHER: &str = "other";

/// The metrics label of a path.
pub fn label(path: &str) -> &'static str {
    find(path).map_or(OTHER, |e| e.label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_aliases_and_subtrees_find_their_route() {
        let r = |p: &str| find(p).map(|e| e.route);
        assert_eq!(r(paths::TOKEN_ALIAS), Some(Route::Token));
        assert_eq!(r(paths::OAUTH_METADATA), Some(Route::Discovery));
        assert_eq!(r("/admin/clients/new"), Some(Route::Admin));
        assert_eq!(r("/admin"), Some(Route::Admin));
        assert_eq!(r("/administrator"), None, "a subtree is a path segment");
        assert_eq!(r("/login/2fa"), Some(Route::SecondFactor));
        assert_eq!(r("/login/2fa/x"), None);
        assert_eq!(r("/nope"), None);
        assert_eq!(label("/nope"), "other");
    }

    #[test]
    fn every_path_is_listed_once() {
        let mut all: Vec<&str> = TABLE.iter().flat_map(|e| e.paths.iter().copied()).collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn methods_and_allow() {
        let token = find(paths::TOKEN).unwrap();
        assert!(token.allows(&Method::POST) && !token.allows(&Method::GET));
        assert_eq!(token.allow_header(), "POST, OPTIONS");
        assert_eq!(find("/healthz").unwrap().allow_header(), "GET, HEAD");
        assert!(find("/login").unwrap().page);
        assert!(!find(paths::AUTHORIZE).unwrap().page);
        assert!(!find(paths::END_SESSION).unwrap().page);
    }
}
