//! Error codes of RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3.1 and OIDC Core §3.1.2.6, each
//! wire string written once.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is missing a required parameter, includes an invalid parameter value,
    /// includes a parameter more than once, or is otherwise malformed.
    InvalidRequest,
    /// The client is not authorized to request an authorization code or to use this grant.
    UnauthorizedClient,
    /// The resource owner or authorization server denied the request.
    AccessDenied,
    /// The authorization server does not support obtaining a response with this type.
    UnsupportedResponseType,
    /// The requested scope is invalid, unknown, or malformed.
    InvalidScope,
    /// The authorization server encountered an unexpected condition.
    ServerError,
    /// The authorization server is currently unable to handle the request.
    TemporarilyUnavailable,
    /// Client authentication failed (RFC 6749 §5.2).
    InvalidClient,
    /// The grant or refresh token is invalid, expired, revoked, does not match the
    /// redirection URI, or was issued to another client (RFC 6749 §5.2).
    InvalidGrant,
    /// The grant type is not supported by the authorization server.
    UnsupportedGrantType,
    /// OIDC Core §3.1.2.6: end-user authentication is required (prompt=none).
    LoginRequired,
    /// OIDC Core §3.1.2.6: end-user consent is required (prompt=none).
    ConsentRequired,
    /// OIDC Core §3.1.2.6: some user interaction is required (prompt=none).
    InteractionRequired,
    /// OIDC Core §6.1: the OP does not support the `request` parameter.
    RequestNotSupported,
    /// OIDC Core §6.2: the OP does not support the `request_uri` parameter.
    RequestUriNotSupported,
    /// RFC 6750 §3.1: the access token is expired, revoked, malformed, or invalid.
    InvalidToken,
    /// RFC 6750 §3.1: the request requires higher privileges than the access token provides.
    InsufficientScope,
    /// RFC 8628 §3.5: the user has not yet completed the device authorization.
    AuthorizationPending,
    /// RFC 8628 §3.5: polling too fast; the interval grows by 5 seconds.
    SlowDown,
    /// RFC 8628 §3.5: the device_code has expired.
    ExpiredToken,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::InteractionRequired => "interaction_required",
            ErrorCode::RequestNotSupported => "request_not_supported",
            ErrorCode::RequestUriNotSupported => "request_uri_not_supported",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::ExpiredToken => "expired_token",
        }
    }
}

/// A protocol error with a short, client-safe description (no CR/LF, printable ASCII:
/// RFC 6749 §5.2 restricts `error_description` to %x20-21 / %x23-5B / %x5D-7E).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcError {
    pub code: ErrorCode,
    pub description: String,
}

impl OidcError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        let description = description
            .into()
            .chars()
            .map(|c| {
                if matches!(c, ' '..='~') && c != '"' && c != '\\' {
                    c
                } else {
                    '\''
                }
            })
            .collect();
        OidcError { code, description }
    }

    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }

    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
}

impl fmt::Display for OidcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.description)
    }
}

impl std::error::Error for OidcError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_stay_in_the_rfc_charset() {
        let e = OidcError::invalid_request("bad \"x\"\r\n\\ é");
        assert!(
            e.description
                .chars()
                .all(|c| matches!(c, ' '..='~') && c != '"' && c != '\\')
        );
    }
}
