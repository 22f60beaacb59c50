//! The one mapping from why a request failed ([`EndpointError`]) to what the client sees,
//! in the shape of its endpoint: RFC 6749 §5.2 JSON, an RFC 6750 Bearer challenge, a page
//! of Latchkey's own, or a redirect to the client's verified redirect_uri. Every page
//! names the request id that the access log and `x-request-id` carry.

use hyper::StatusCode;

use super::response::{self, EndpointError, Fail, Resp, Shape};
use super::{App, request_id};
use crate::oidc::OidcError;

impl App {
    pub fn error_answer(&self, e: EndpointError, shape: Shape) -> Resp {
        match (e, shape) {
            (EndpointError::Redirect(r), _) => super::authorize::redirect_error(self, r),
            (
                EndpointError::Page {
                    status,
                    title,
                    message,
                },
                _,
            ) => self.error_page(status, title, &message),
            (EndpointError::Fail(f), Shape::Page) => self.fail_page(f),
            (EndpointError::Fail(f), shape) => self.error_answer(f.to_oidc().into(), shape),
            (EndpointError::Protocol(e), Shape::Json) => response::token_error(&e),
            (EndpointError::Protocol(e), Shape::Bearer) => response::bearer_error(Some(&e)),
            (EndpointError::Protocol(e), Shape::Page) => {
                self.error_page(StatusCode::BAD_REQUEST, "Invalid request", &e.description)
            }
            (EndpointError::NoCredentials, Shape::Bearer) => response::bearer_error(None),
            (EndpointError::NoCredentials, shape) => self.error_answer(
                OidcError::invalid_request("credentials are required").into(),
                shape,
            ),
        }
    }

    /// A page of Latchkey's own saying what went wrong, with the request id.
    pub fn error_page(&self, status: StatusCode, title: &str, message: &str) -> Resp {
        let id = request_id();
        response::html(status, self.pages.error(title, message, id.as_deref()))
    }

    /// A failure on a page: a generic error page; the detail is logged under the request
    /// id the page shows.
    pub fn fail_page(&self, f: Fail) -> Resp {
        let e = f.to_oidc();
        let status = if f.is_temporary() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        self.error_page(status, "Something went wrong", &e.description)
    }
}
