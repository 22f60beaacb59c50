//! Clients: patches, the JSON view, and the read-modify-write of stored clients.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AdminError;
use crate::config::Config;
use crate::model::Client;
use crate::oidc::registration::{ClientSpec, build_client};
use crate::store::prelude::*;

/// Changes to a client; absent or empty fields keep their value.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientPatch {
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub skip_consent: Option<bool>,
    pub require_pkce: Option<bool>,
    pub id_token_alg: Option<String>,
    pub policy: Option<String>,
    pub allowed_groups: Option<Vec<String>>,
    pub backchannel_logout_uri: Option<String>,
    pub frontchannel_logout_uri: Option<String>,
    pub refresh_requires_session: Option<bool>,
    #[serde(default)]
    pub refresh_grace_secs: Option<i64>,
    #[serde(default)]
    pub groups_filter: Option<Vec<String>>,
    #[serde(default)]
    pub claims: Option<Vec<crate::model::ClaimRule>>,
}

pub(super) fn client_json(c: &Client) -> Value {
    json!({
        "client_id": c.client_id,
        "name": c.name,
        "public": c.is_public(),
        "redirect_uris": c.redirect_uris,
        "post_logout_redirect_uris": c.post_logout_redirect_uris,
        "scopes": c.scopes,
        "grant_types": c.grant_types,
        "response_types": c.response_types,
        "token_endpoint_auth_method": c.token_endpoint_auth_method.as_str(),
        "policy": c.policy,
        "skip_consent": c.skip_consent,
        "id_token_alg": c.id_token_alg.as_str(),
        "require_pkce": c.require_pkce,
                        "allowed_groups": c.allowed_groups,
        "jwks_uri": c.jwks_uri,
        "has_jwks": c.jwks.is_some(),
                "require_par": c.require_par,
        "refresh_requires_session": c.refresh_requires_session,
        "refresh_grace_secs": c.refresh_grace_secs,
        "groups_filter": c.groups_filter,
        "claims": c.claims,
        "backchannel_logout_uri": c.backchannel_logout_uri,
        "frontchannel_logout_uri": c.frontchannel_logout_uri,
        "frontchannel_logout_session_required": c.frontchannel_logout_session_required,
        "declared": c.declared,
        "created_at": c.created_at,
    })
}

pub(super) fn find_client(
    store: &dyn Store,
    config: &Config,
    client_id: &str,
) -> Result<Client, AdminError> {
    if config.declared_clients.contains_key(client_id) {
        return Err(AdminError::input(format!(
            "client_id: {client_id:?} is declared in the configuration file; change it there"
        )));
    }
    store
        .client(client_id)?
        .ok_or_else(|| AdminError::input(format!("client_id: no client {client_id:?}")))
}

/// The registration a stored client was built from.
pub fn spec_of(c: &Client) -> ClientSpec {
    ClientSpec {
        name: c.name.clone(),
        redirect_uris: c.redirect_uris.clone(),
        post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
        scopes: c.scopes.clone(),
        grant_types: c.grant_types.clone(),
        response_types: c.response_types.clone(),
        public: c.is_public(),
        token_endpoint_auth_method: Some(c.token_endpoint_auth_method.as_str().to_string()),
        policy: Some(c.policy.as_str().to_string()),
        skip_consent: c.skip_consent,
        id_token_alg: Some(c.id_token_alg.as_str().to_string()),
        require_pkce: c.require_pkce,
        backchannel_logout_uri: c.backchannel_logout_uri.clone(),
        frontchannel_logout_uri: c.frontchannel_logout_uri.clone(),
        frontchannel_logout_session_required: c.frontchannel_logout_session_required,
        allowed_groups: c.allowed_groups.clone(),
        jwks: c.jwks.clone(),
        jwks_uri: c.jwks_uri.clone(),
        require_par: c.require_par,
        refresh_requires_session: c.refresh_requires_session,
        refresh_grace_secs: c.refresh_grace_secs,
        groups_filter: c.groups_filter.clone(),
        claims: c.claims.clone(),
    }
}

/// A client with the patch's fields changed, validated like a new one.
pub(super) fn apply_patch(old: &Client, patch: &ClientPatch) -> Result<Client, AdminError> {
    let or =
        |v: &Vec<String>, old: &Vec<String>| if v.is_empty() { old.clone() } else { v.clone() };
    let base = spec_of(old);
    let spec = ClientSpec {
        name: patch.name.clone().unwrap_or_else(|| old.name.clone()),
        redirect_uris: or(&patch.redirect_uris, &old.redirect_uris),
        post_logout_redirect_uris: or(
            &patch.post_logout_redirect_uris,
            &old.post_logout_redirect_uris,
        ),
        scopes: or(&patch.scopes, &old.scopes),
        grant_types: or(&patch.grant_types, &old.grant_types),
        response_types: or(&patch.response_types, &old.response_types),
        policy: patch.policy.clone().or(base.policy.clone()),
        skip_consent: patch.skip_consent.unwrap_or(old.skip_consent),
        id_token_alg: patch.id_token_alg.clone().or(base.id_token_alg.clone()),
        require_pkce: patch.require_pkce.unwrap_or(old.require_pkce),
        allowed_groups: patch
            .allowed_groups
            .clone()
            .unwrap_or_else(|| old.allowed_groups.clone()),
        backchannel_logout_uri: patch
            .backchannel_logout_uri
            .clone()
            .or(old.backchannel_logout_uri.clone()),
        frontchannel_logout_uri: patch
            .frontchannel_logout_uri
            .clone()
            .or(old.frontchannel_logout_uri.clone()),
        refresh_requires_session: patch
            .refresh_requires_session
            .unwrap_or(old.refresh_requires_session),
        refresh_grace_secs: patch.refresh_grace_secs.unwrap_or(old.refresh_grace_secs),
        groups_filter: patch
            .groups_filter
            .clone()
            .unwrap_or_else(|| old.groups_filter.clone()),
        claims: patch.claims.clone().unwrap_or_else(|| old.claims.clone()),
        ..base
    };
    let mut client =
        build_client(old.client_id.clone(), spec, old.created_at).map_err(AdminError::input)?;
    client.secret_hash = old.secret_hash.clone();
    client.jwt_secret = old.jwt_secret.clone();
    Ok(client)
}

/// The same for a (non-declared) client.
pub(super) fn modify_client(
    store: &dyn Store,
    config: &Config,
    client_id: &str,
    edit: impl Fn(&Client) -> Result<Client, AdminError>,
) -> Result<Client, AdminError> {
    for _ in 0..16 {
        let old = find_client(store, config, client_id)?;
        let new = edit(&old)?;
        if new == old || store.update_client_if(&old, &new)? {
            return Ok(new);
        }
    }
    Err(AdminError {
        message: "the client keeps changing; try again".into(),
        exit_code: 1,
    })
}

/// `Command::ClientAdd`: the secret (of a confidential client) is returned once.
pub(super) fn add_client(
    store: &dyn Store,
    spec: ClientSpec,
    now: i64,
) -> Result<Value, AdminError> {
    let public = spec.public;
    let mut client =
        build_client(crate::clock::random_client_id(), spec, now).map_err(AdminError::input)?;
    let secret = (!public).then(crate::clock::random_token);
    client.secret_hash = secret.as_deref().map(crate::keys::client_secret_hash);
    if client.token_endpoint_auth_method == crate::model::AuthMethod::ClientSecretJwt {
        client.jwt_secret = secret.clone();
    }
    store.create_client(&client)?;
    let mut out = client_json(&client);
    if let (Some(s), Value::Object(o)) = (secret, &mut out) {
        o.insert("client_secret".into(), json!(s));
    }
    Ok(out)
}

/// `Command::ClientReplace`.
pub(super) fn replace_client(
    store: &dyn Store,
    config: &Config,
    client_id: String,
    spec: ClientSpec,
) -> Result<Value, AdminError> {
    let client = modify_client(store, config, &client_id, |old| {
        // The fields the admin page edits come from `spec`; the rest stay.
        let grants_changed = spec.grant_types != old.grant_types;
        let full = ClientSpec {
            name: spec.name.clone(),
            redirect_uris: spec.redirect_uris.clone(),
            post_logout_redirect_uris: spec.post_logout_redirect_uris.clone(),
            scopes: spec.scopes.clone(),
            grant_types: spec.grant_types.clone(),
            policy: spec.policy.clone(),
            skip_consent: spec.skip_consent,
            require_pkce: spec.require_pkce,
            allowed_groups: spec.allowed_groups.clone(),
            groups_filter: spec.groups_filter.clone(),
            refresh_grace_secs: spec.refresh_grace_secs,
            claims: spec.claims.clone(),
            response_types: if grants_changed {
                vec![]
            } else {
                old.response_types.clone()
            },
            ..spec_of(old)
        };
        let mut c =
            build_client(old.client_id.clone(), full, old.created_at).map_err(AdminError::input)?;
        c.secret_hash = old.secret_hash.clone();
        c.jwt_secret = old.jwt_secret.clone();
        Ok(c)
    })?;
    Ok(client_json(&client))
}

/// `Command::ClientRotateSecret`.
pub(super) fn rotate_secret(
    store: &dyn Store,
    config: &Config,
    client_id: String,
) -> Result<Value, AdminError> {
    let secret = crate::clock::random_token();
    let client = modify_client(store, config, &client_id, |old| {
        if old.is_public() {
            return Err(AdminError::input(
                "client_id: public clients have no secret",
            ));
        }
        let mut c = old.clone();
        c.secret_hash = Some(crate::keys::client_secret_hash(&secret));
        if c.jwt_secret.is_some() {
            c.jwt_secret = Some(secret.clone());
        }
        Ok(c)
    })?;
    Ok(json!({"client_id": client.client_id, "client_secret": secret}))
}
