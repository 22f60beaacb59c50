//! The applications pages: the list, and the form that adds or edits a client.

use hyper::StatusCode;
use serde_json::{Value, json};

use super::{Ctx, group_names, secret_page};
use crate::admin::Command;
use crate::admin::presets;
use crate::http::response::{self, Resp};
use crate::model::{Client, Policy};
use crate::oidc::registration::{ClientSpec, DEVICE_CODE};

/// Grant types offered on the application form, with their plain names.
const GRANTS: &[(&str, &str)] = &[
    (
        "authorization_code",
        "Authorization code (sign-in through the browser)",
    ),
    ("refresh_token", "Refresh tokens"),
    (
        "client_credentials",
        "Client credentials (the application itself)",
    ),
    (DEVICE_CODE, "Device code (TVs and command-line tools)"),
    ("implicit", "Implicit (legacy browser applications)"),
    ("password", "Password (legacy; one-factor users only)"),
];

/// How the list of applications names a sign-in policy.
fn policy_label(p: Policy) -> &'static str {
    match p {
        Policy::OneFactor => "password",
        Policy::TwoFactor => "two factors",
        Policy::Passkey => "passkey",
    }
}

pub(super) fn clients(c: &Ctx<'_>) -> Resp {
    let mut all: Vec<Client> = c.app.config.declared_clients.values().cloned().collect();
    match c.app.store.clients() {
        Ok(stored) => all.extend(stored),
        Err(e) => return c.app.fail_page(e.into()),
    }
    all.sort_by_key(|c| c.name.to_lowercase());
    let rows: Vec<Value> = all
        .iter()
        .map(|cl| {
            json!({"client_id": cl.client_id, "name": cl.name, "public": cl.is_public(),
                   "declared": cl.declared, "policy": policy_label(cl.policy)})
        })
        .collect();
    c.page(
        "clients",
        "admin_clients.html",
        json!({"title": "Applications", "clients": rows}),
        StatusCode::OK,
    )
}

/// The application form's view of a client: what it has, or what was submitted.
fn client_view(spec: &ClientSpec) -> Value {
    // One empty row to type a further URL into, without JavaScript.
    let with_blank = |v: &Vec<String>| {
        let mut v = v.clone();
        v.push(String::new());
        v
    };
    json!({
        "name": spec.name,
        "redirect_uris": with_blank(&spec.redirect_uris),
        "post_logout_redirect_uris": with_blank(&spec.post_logout_redirect_uris),
        "scopes": spec.scopes,
        "grant_types": spec.grant_types,
        "public": spec.public,
        "policy": spec.policy.as_deref().unwrap_or("one_factor"),
        "allowed_groups": spec.allowed_groups,
        "skip_consent": spec.skip_consent,
        "require_pkce": spec.require_pkce,
        "custom_scopes": spec.scopes.iter()
            .filter(|s| !crate::oidc::scope::SUPPORTED.contains(&s.as_str()))
            .cloned().collect::<Vec<_>>().join(" "),
        "groups_filter": spec.groups_filter.join(" "),
        "refresh_grace_secs": spec.refresh_grace_secs,
        "claims": if spec.claims.is_empty() {
            String::new()
        } else {
            serde_json::to_string_pretty(&spec.claims).unwrap_or_default()
        },
    })
}

pub(super) fn client_form(
    c: &Ctx<'_>,
    cl: Option<&Client>,
    error: Option<&str>,
    status: StatusCode,
) -> Resp {
    let mut spec = match cl {
        Some(cl) => crate::admin::spec_of(cl),
        None => ClientSpec {
            scopes: vec!["openid".into(), "profile".into(), "email".into()],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            redirect_uris: vec![String::new()],
            ..ClientSpec::default()
        },
    };
    // "Start from a preset": `?preset=NAME&url=APP_URL` fills the new form.
    let q = c.req.query_params();
    let preset = match (cl, q.get_lenient("preset"), q.get_lenient("url")) {
        (None, Some(name), Some(url)) if !name.is_empty() => {
            let found = presets::find(name).ok_or_else(|| format!("preset: {name:?} is unknown"));
            match found.and_then(|p| presets::app_url(url).map(|u| (p, u))) {
                Ok((p, u)) => {
                    spec.scopes.clear();
                    spec.redirect_uris.retain(|r| !r.is_empty());
                    match p.apply(&mut spec, &u) {
                        Ok(()) => Some((p.name.to_string(), u)),
                        Err(e) => {
                            return client_page(
                                c,
                                None,
                                &spec,
                                None,
                                Some(&e),
                                StatusCode::BAD_REQUEST,
                            );
                        }
                    }
                }
                Err(e) => {
                    return client_page(c, None, &spec, None, Some(&e), StatusCode::BAD_REQUEST);
                }
            }
        }
        _ => None,
    };
    client_page(c, cl, &spec, preset.as_ref(), error, status)
}

/// The application form for a new client (`existing` is `None`) or a stored one.
fn client_page(
    c: &Ctx<'_>,
    existing: Option<&Client>,
    spec: &ClientSpec,
    preset: Option<&(String, String)>,
    error: Option<&str>,
    status: StatusCode,
) -> Resp {
    let endpoints: Vec<Value> = presets::endpoints(&c.app.config.issuer)
        .into_iter()
        .map(|(label, url)| json!({"label": label, "url": url}))
        .collect();
    let preset_list: Vec<Value> = presets::PRESETS
        .iter()
        .map(|p| json!({"name": p.name, "title": p.title, "example": p.example_url}))
        .collect();
    let grants: Vec<Value> = GRANTS
        .iter()
        .map(|(v, l)| json!({"value": v, "label": l}))
        .collect();
    let (title, action) = match existing {
        Some(x) => (x.name.clone(), format!("/admin/clients/{}", x.client_id)),
        None => (
            "Add new application".to_string(),
            "/admin/clients/new".to_string(),
        ),
    };
    let mut view = client_view(spec);
    if let Some(x) = existing {
        view["public"] = json!(x.is_public());
    }
    c.page(
        "clients",
        "admin_client.html",
        json!({
            "title": title,
            "action": action,
            "new": existing.is_none(),
            "client_id": existing.map(|x| x.client_id.clone()),
            "readonly": existing.is_some_and(|x| x.declared),
            "c": view,
            "all_scopes": crate::oidc::scope::SUPPORTED,
            "all_grants": grants,
            "groups": group_names(c),
            "error": error,
            "endpoints": endpoints,
            "presets": preset_list,
            "preset": preset.map(|(n, _)| n.clone()),
            "app_url": preset.map(|(_, u)| u.clone()),
        }),
        status,
    )
}

/// The submitted application form as a registration; `Err` names a field that does not
/// parse (the custom claims' JSON).
fn client_spec(c: &Ctx<'_>) -> Result<ClientSpec, String> {
    let words = |name: &str| -> Vec<String> {
        c.field(name)
            .unwrap_or_default()
            .split(|ch: char| ch.is_whitespace() || ch == ',')
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut scopes = c.all("scope");
    scopes.extend(words("custom_scopes"));
    let claims_text = c.field("claims").unwrap_or_default();
    let claims = if claims_text.trim().is_empty() {
        vec![]
    } else {
        serde_json::from_str(&claims_text)
            .map_err(|e| format!("claims: not a JSON list of rules ({e})"))?
    };
    let grace = c.field("refresh_grace_secs").unwrap_or_default();
    let refresh_grace_secs = if grace.trim().is_empty() {
        0
    } else {
        grace
            .trim()
            .parse()
            .map_err(|_| "refresh_grace_secs: a number of seconds".to_string())?
    };
    Ok(ClientSpec {
        name: c.field("name").unwrap_or_default().trim().to_string(),
        redirect_uris: c.all("redirect_uri"),
        post_logout_redirect_uris: c.all("post_logout_redirect_uri"),
        scopes,
        grant_types: c.all("grant_type"),
        public: c.field("type").as_deref() == Some("public"),
        policy: c.field("policy"),
        skip_consent: c.checked("skip_consent"),
        require_pkce: c.checked("require_pkce"),
        allowed_groups: c.all("allowed_group"),
        groups_filter: words("groups_filter"),
        refresh_grace_secs,
        claims,
        ..ClientSpec::default()
    })
}

pub(super) async fn client_save(c: &Ctx<'_>, id: Option<&str>) -> Resp {
    let existing = match id.map(|i| c.app.client(i)).transpose() {
        Ok(x) => x.flatten(),
        Err(e) => return c.app.fail_page(e.into()),
    };
    let preset = match (c.field("preset"), c.field("app_url")) {
        (Some(p), Some(u)) if id.is_none() && !p.is_empty() => Some((p, u)),
        _ => None,
    };
    let spec = match client_spec(c) {
        Ok(s) => s,
        Err(e) => {
            let shown = ClientSpec {
                name: c.field("name").unwrap_or_default(),
                ..ClientSpec::default()
            };
            let (x, p) = (existing.as_ref(), preset.as_ref());
            return client_page(c, x, &shown, p, Some(&e), StatusCode::BAD_REQUEST);
        }
    };
    let cmd = match id {
        None => Command::ClientAdd {
            spec: spec.clone(),
            preset: preset.clone(),
        },
        Some(id) => Command::ClientReplace {
            client_id: id.to_string(),
            spec: spec.clone(),
        },
    };
    match c.run(cmd).await {
        Ok(v) => match id {
            None => {
                let new_id = v["client_id"].as_str().unwrap_or_default().to_string();
                secret_page(
                    c,
                    "Application created",
                    &v,
                    &format!("/admin/clients/{new_id}"),
                )
            }
            Some(id) => response::redirect(&format!("/admin/clients/{id}")),
        },
        // Shown again with what was typed, and the reason.
        Err(e) if e.exit_code == 2 => client_page(
            c,
            existing.as_ref(),
            &spec,
            preset.as_ref(),
            Some(&e.message),
            StatusCode::BAD_REQUEST,
        ),
        Err(e) => c.fail(e),
    }
}
