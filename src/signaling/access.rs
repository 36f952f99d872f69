//! Who may talk to the server: the browser origin check for the signaling
//! transports, and the bearer secret for everything under /api.

use super::Signaling;
use crate::protocol::{ErrorCode, ProtocolError};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Whether a request's `Origin` may use signaling. With no allowed origins
/// configured, any. A request without `Origin` is not from a browser page
/// (browsers always send it on WebSocket and cross-origin requests) and is
/// let through; a page of the server's own origin is always allowed.
pub fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let origin = origin.trim_end_matches('/');
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    matches!((host, origin_host), (Some(h), Some(o)) if h.eq_ignore_ascii_case(o))
}

/// An error as an HTTP response: the status that goes with its code and the
/// protocol's error JSON as the body.
pub fn error_response(e: &ProtocolError) -> Response {
    let status =
        StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(e.to_message())).into_response()
}

pub fn forbidden_origin() -> Response {
    error_response(&ProtocolError::new(
        ErrorCode::Forbidden,
        "This page's origin is not allowed to use this server (--allowed-origin).",
    ))
}

/// Middleware: with an API secret, every path under /api wants
/// `Authorization: Bearer <secret>`. It sits on the whole router, so routes
/// added under /api later are covered without being listed here.
pub async fn require_api_secret(
    State(signaling): State<Arc<Signaling>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let is_api = path == "/api" || path.starts_with("/api/");
    if let (true, Some(secret)) = (is_api, &signaling.settings.api_secret) {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok());
        if !crate::auth::bearer_matches(given, secret) {
            let mut response = error_response(&ProtocolError::new(
                ErrorCode::Unauthorized,
                "The HTTP API needs \"Authorization: Bearer <the server's API secret>\" (--api-secret, or what `gridmix api-secret` prints for the --auth-secret).",
            ));
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(o) = origin {
            h.insert(header::ORIGIN, o.parse().unwrap());
        }
        h.insert(header::HOST, host.parse().unwrap());
        h
    }

    #[test]
    fn origins_are_checked_only_when_configured() {
        let allowed = vec!["https://meet.example.org".to_owned()];
        let host = "gridmix.example.org:8080";
        assert!(origin_allowed(
            &[],
            &headers(Some("https://evil.test"), host)
        ));
        assert!(origin_allowed(
            &allowed,
            &headers(Some("https://meet.example.org"), host)
        ));
        assert!(origin_allowed(
            &allowed,
            &headers(Some("HTTPS://MEET.example.org/"), host)
        ));
        assert!(!origin_allowed(
            &allowed,
            &headers(Some("https://evil.test"), host)
        ));
        assert!(!origin_allowed(
            &allowed,
            &headers(Some("https://meet.example.org.evil.test"), host)
        ));
        // The server's own page, and clients that are not browsers.
        assert!(origin_allowed(
            &allowed,
            &headers(Some("http://gridmix.example.org:8080"), host)
        ));
        assert!(origin_allowed(&allowed, &headers(None, host)));
    }
}
