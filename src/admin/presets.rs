//! Application presets (issue 17): what each common application needs registered (its
//! redirect path, scopes, PKCE, claims) and the configuration snippet to paste into it,
//! filled in with this server's real URLs and the new client's credentials. The snippets
//! are the files in `assets/presets/`. Pure: no I/O.

use crate::oidc::discovery::paths;
use crate::oidc::registration::ClientSpec;

/// One application Latchkey knows how to register.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static str,
    pub title: &'static str,
    /// Appended to the application's URL to make its redirect URI.
    pub callback: &'static str,
    pub example_url: &'static str,
    pub scopes: &'static [&'static str],
    /// Custom claims (JSON array of rules), `""` for none.
    pub claims: &'static str,
    /// Whether the application sends PKCE (those that do not would be refused).
    pub pkce: bool,
    /// Appended to the application's URL: where it returns after signing out (`""`:
    /// none registered).
    pub post_logout: &'static str,
    /// Further redirect URIs, as they are (a CLI's loopback listener).
    pub extra_redirects: &'static [&'static str],
    snippet: &'static str,
}

const STD: &[&str] = &["openid", "profile", "email", "groups"];

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "grafana",
        title: "Grafana",
        callback: "/login/generic_oauth",
        example_url: "https://grafana.example.lan",
        scopes: &["openid", "profile", "email", "groups", "offline_access"],
        claims: "",
        pkce: true,
        post_logout: "/login",
        extra_redirects: &[],
        snippet: include_str!("../../assets/presets/grafana.txt"),
    },
    Preset {
        name: "portainer",
        title: "Portainer",
        callback: "/",
        example_url: "https://portainer.example.lan:9443",
        scopes: STD,
        claims: "",
        pkce: false,
        post_logout: "",
        extra_redirects: &[],
        snippet: include_str!("../../assets/presets/portainer.txt"),
    },
    Preset {
        name: "proxmox",
        title: "Proxmox VE",
        callback: "",
        example_url: "https://pve.example.lan:8006",
        scopes: &["openid", "profile", "email"],
        claims: "",
        pkce: true,
        post_logout: "",
        extra_redirects: &[],
        snippet: include_str!("../../assets/presets/proxmox.txt"),
    },
    Preset {
        name: "django",
        title: "Django (mozilla-django-oidc)",
        callback: "/oidc/callback/",
        example_url: "https://app.example.lan",
        scopes: &["openid", "profile", "email"],
        claims: "",
        pkce: true,
        post_logout: "",
        extra_redirects: &[],
        snippet: include_str!("../../assets/presets/django.txt"),
    },
    Preset {
        name: "synapse",
        title: "Matrix Synapse",
        callback: "/_synapse/client/oidc/callback",
        example_url: "https://matrix.example.lan",
        scopes: &["openid", "profile", "email"],
        claims: "",
        pkce: true,
        post_logout: "",
        extra_redirects: &[],
        snippet: include_str!("../../assets/presets/synapse.txt"),
    },
    Preset {
        name: "minio",
        title: "MinIO",
        callback: "/oauth_callback",
        example_url: "https://minio.example.lan:9001",
        scopes: &["openid", "profile", "email", "minio"],
        claims: r#"[{"name": "policy", "scope": "minio", "groups": {"admin": "consoleAdmin", "staff": "readwrite"}}]"#,
        pkce: false,
        post_logout: "",
        extra_redirects: &[],
        snippet: include_str!("../../assets/presets/minio.txt"),
    },
    Preset {
        name: "vault",
        title: "HashiCorp Vault",
        callback: "/ui/vault/auth/oidc/oidc/callback",
        example_url: "https://vault.example.lan:8200",
        scopes: STD,
        claims: "",
        pkce: true,
        post_logout: "",
        extra_redirects: &["http://localhost:8250/oidc/callback"],
        snippet: include_str!("../../assets/presets/vault.txt"),
    },
    Preset {
        name: "nextcloud",
        title: "Nextcloud (user_oidc)",
        callback: "/apps/user_oidc/code",
        example_url: "https://cloud.example.lan",
        scopes: STD,
        claims: "",
        pkce: true,
        post_logout: "",
        extra_redirects: &[],
        snippet: include_str!("../../assets/presets/nextcloud.txt"),
    },
    Preset {
        name: "oauth2-proxy",
        title: "oauth2-proxy",
        callback: "/oauth2/callback",
        example_url: "https://app.example.lan",
        scopes: STD,
        claims: "",
        pkce: true,
        post_logout: "",
        extra_redirects: &[],
        snippet: include_str!("../../assets/presets/oauth2-proxy.txt"),
    },
    Preset {
        name: "immich",
        title: "Immich",
        callback: "/auth/login",
        example_url: "https://photos.example.lan",
        scopes: &["openid", "profile", "email"],
        claims: r#"[{"name": "immich_role", "scope": "profile", "groups": {"immich-admins": "admin"}}]"#,
        pkce: true,
        post_logout: "",
        extra_redirects: &[],
        snippet: include_str!("../../assets/presets/immich.txt"),
    },
    Preset {
        name: "jellyfin",
        title: "Jellyfin (SSO plugin)",
        callback: "/sso/OID/redirect/latchkey",
        example_url: "https://jellyfin.example.lan",
        scopes: STD,
        claims: "",
        pkce: true,
        post_logout: "",
        extra_redirects: &[],
        snippet: include_str!("../../assets/presets/jellyfin.txt"),
    },
];

pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// The application's URL as typed, without a trailing slash; `Err` names the problem.
pub fn app_url(url: &str) -> Result<String, String> {
    let trimmed = url.trim().trim_end_matches('/');
    let parsed = url::Url::parse(trimmed).map_err(|e| format!("url: {trimmed:?}: {e}"))?;
    if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
        return Err(format!(
            "url: {trimmed:?} is not an http(s) URL of the application"
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("url: {trimmed:?} has a query or fragment"));
    }
    Ok(trimmed.to_string())
}

impl Preset {
    /// The redirect URIs for the application at `app_url` (see [`app_url`]).
    pub fn redirect_uris(&self, app_url: &str) -> Vec<String> {
        let mut uris = vec![format!("{app_url}{}", self.callback)];
        if self.name == "immich" {
            uris.push(format!("{app_url}/user-settings"));
        }
        uris.extend(self.extra_redirects.iter().map(|u| u.to_string()));
        uris
    }

    /// Fills `spec` (name, redirect URIs, scopes, PKCE, claims) for the application at
    /// `app_url`; what the caller set explicitly (more redirect URIs, a name) is kept.
    pub fn apply(&self, spec: &mut ClientSpec, app_url: &str) -> Result<(), String> {
        if spec.name.trim().is_empty() {
            spec.name = self.title.to_string();
        }
        for u in self.redirect_uris(app_url) {
            if !spec.redirect_uris.contains(&u) {
                spec.redirect_uris.push(u);
            }
        }
        if spec.scopes.is_empty() {
            spec.scopes = self.scopes.iter().map(|s| s.to_string()).collect();
        }
        spec.require_pkce = self.pkce;
        if !self.post_logout.is_empty() {
            let back = format!("{app_url}{}", self.post_logout);
            if !spec.post_logout_redirect_uris.contains(&back) {
                spec.post_logout_redirect_uris.push(back);
            }
        }
        if spec.claims.is_empty() && !self.claims.is_empty() {
            spec.claims = serde_json::from_str(self.claims)
                .map_err(|e| format!("preset {}: claims: {e}", self.name))?;
        }
        Ok(())
    }

    /// The configuration snippet for this application, with this server's URLs.
    pub fn snippet(
        &self,
        issuer: &str,
        app_url: &str,
        client_id: &str,
        client_secret: &str,
    ) -> String {
        let redirect = self.redirect_uris(app_url).remove(0);
        let values = [
            ("{{issuer}}", issuer.to_string()),
            (
                "{{discovery}}",
                format!("{issuer}{}", paths::OIDC_DISCOVERY),
            ),
            ("{{authorize}}", format!("{issuer}{}", paths::AUTHORIZE)),
            ("{{token}}", format!("{issuer}{}", paths::TOKEN)),
            ("{{userinfo}}", format!("{issuer}{}", paths::USERINFO)),
            ("{{jwks}}", format!("{issuer}{}", paths::JWKS)),
            ("{{end_session}}", format!("{issuer}{}", paths::END_SESSION)),
            ("{{client_id}}", client_id.to_string()),
            ("{{client_secret}}", client_secret.to_string()),
            ("{{app_url}}", app_url.to_string()),
            ("{{redirect_uri}}", redirect),
        ];
        let mut out = self.snippet.to_string();
        for (k, v) in values {
            out = out.replace(k, &v);
        }
        out
    }
}

/// The endpoints every application page shows (issue 17, item 3).
pub fn endpoints(issuer: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Issuer", issuer.to_string()),
        ("Discovery", format!("{issuer}{}", paths::OIDC_DISCOVERY)),
        ("Authorization", format!("{issuer}{}", paths::AUTHORIZE)),
        ("Token", format!("{issuer}{}", paths::TOKEN)),
        ("UserInfo", format!("{issuer}{}", paths::USERINFO)),
        ("JWKS", format!("{issuer}{}", paths::JWKS)),
        ("End session", format!("{issuer}{}", paths::END_SESSION)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_fills_a_valid_client_and_a_complete_snippet() {
        for p in PRESETS {
            let mut spec = ClientSpec::default();
            p.apply(&mut spec, p.example_url).unwrap();
            let client = crate::oidc::registration::build_client("id".into(), spec, 0)
                .unwrap_or_else(|e| panic!("{}: {e}", p.name));
            assert_eq!(client.require_pkce, p.pkce, "{}", p.name);
            assert!(!client.redirect_uris.is_empty());
            let s = p.snippet("https://id.example.lan", p.example_url, "cid", "sec");
            assert!(s.contains("cid"), "{}: the client id", p.name);
            assert!(s.contains("https://id.example.lan"), "{}", p.name);
            assert!(!s.contains("{{issuer") && !s.contains("{{client") && !s.contains("{{app_url"));
            // Public clients have no secret to show; every preset here is confidential.
            assert!(s.contains("sec"), "{}: the secret", p.name);
        }
        assert!(find("minio").is_some() && find("nothing").is_none());
    }

    #[test]
    fn application_urls_are_checked() {
        assert_eq!(
            app_url("https://g.example.lan/ ").unwrap(),
            "https://g.example.lan"
        );
        assert!(app_url("ftp://x").is_err());
        assert!(app_url("https://x/?a=b").is_err());
        assert!(app_url("not a url").is_err());
        let p = find("portainer").unwrap();
        assert_eq!(
            p.redirect_uris("https://p.example.lan:9443"),
            vec!["https://p.example.lan:9443/".to_string()]
        );
        // Proxmox sends its origin as it is, without a slash.
        let p = find("proxmox").unwrap();
        assert_eq!(
            p.redirect_uris("https://pve.example.lan:8006"),
            vec!["https://pve.example.lan:8006".to_string()]
        );
    }
}
