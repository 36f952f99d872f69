//! Who may talk to the server: the Host check (--public-host) for every
//! request, the browser origin check for the signaling transports, and, for
//! everything under /api, no cross-origin browser requests and the bearer
//! secret.

use super::{Signaling, SignalingSettings};
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
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        None => true,
        Some(origin) => listed_or_own(allowed, origin, headers),
    }
}

/// Whether `origin` is one of `allowed` or the server's own (by Host).
fn listed_or_own(allowed: &[String], origin: &str, headers: &HeaderMap) -> bool {
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

/// Whether a request's `Host` is one this server is published under. With
/// no public hosts configured, any. A page that DNS rebinding pointed at this
/// server sends its own name as Host (and as Origin, so the own-origin rule
/// alone cannot tell).
pub fn host_allowed(public_hosts: &[String], headers: &HeaderMap) -> bool {
    if public_hosts.is_empty() {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    public_hosts.iter().any(|p| p.eq_ignore_ascii_case(host))
}

/// Whether a request comes from a browser page of another origin: its
/// `Sec-Fetch-Site` says so, or its `Origin` is neither this server's (by
/// Host) nor an allowed one. A form or `text/plain` fetch from any web page
/// can reach /api without a CORS preflight; this is what refuses it.
pub fn cross_origin(allowed: &[String], headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|h| h.to_str().ok());
    if matches!(fetch_site, Some("cross-site" | "same-site")) {
        return true;
    }
    headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|origin| !listed_or_own(allowed, origin, headers))
}

/// Whether a request carries `Authorization: Bearer <the API secret>`;
/// false on a server without one.
pub fn has_api_bearer(settings: &SignalingSettings, headers: &HeaderMap) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    settings
        .api_secret
        .as_deref()
        .is_some_and(|secret| crate::auth::bearer_matches(given, secret))
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

/// Middleware on the whole router: a request for a Host this server is not
/// published under is refused; every path under /api refuses cross-origin
/// browser requests and, with an API secret, wants `Authorization: Bearer
/// <secret>`. Routes added under /api later are covered without being
/// listed here.
pub async fn guard(
    State(signaling): State<Arc<Signaling>>,
    request: Request,
    next: Next,
) -> Response {
    let settings = &signaling.settings;
    if !host_allowed(&settings.public_hosts, request.headers()) {
        let mut response = error_response(&ProtocolError::new(
            ErrorCode::Forbidden,
            "This server is not published under that host name (--public-host).",
        ));
        *response.status_mut() = StatusCode::MISDIRECTED_REQUEST;
        return response;
    }
    let path = request.uri().path();
    let is_api = path == "/api" || path.starts_with("/api/");
    if is_api && cross_origin(&settings.allowed_origins, request.headers()) {
        return error_response(&ProtocolError::new(
            ErrorCode::Forbidden,
            "The HTTP API does not take requests from other sites' pages.",
        ));
    }
    if is_api && settings.api_secret.is_some() && !has_api_bearer(settings, request.headers()) {
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
    fn only_public_hosts_are_served_when_configured() {
        let public = vec!["meet.example.org".to_owned(), "127.0.0.1:8080".to_owned()];
        assert!(host_allowed(&[], &headers(None, "evil.test")));
        assert!(host_allowed(&public, &headers(None, "MEET.example.org")));
        assert!(host_allowed(&public, &headers(None, "127.0.0.1:8080")));
        assert!(!host_allowed(&public, &headers(None, "evil.test")));
        assert!(!host_allowed(&public, &headers(None, "127.0.0.1:9999")));
        assert!(!host_allowed(&public, &HeaderMap::new()));
    }

    #[test]
    fn other_sites_pages_are_cross_origin_for_the_api() {
        let host = "gridmix.example.org:8080";
        let from = |site: Option<&str>, origin: Option<&str>| {
            let mut h = headers(origin, host);
            if let Some(site) = site {
                h.insert("sec-fetch-site", site.parse().unwrap());
            }
            h
        };
        let none: &[String] = &[];
        // curl and scripts: no Origin, no Sec-Fetch-Site.
        assert!(!cross_origin(none, &from(None, None)));
        assert!(!cross_origin(
            none,
            &from(Some("same-origin"), Some("http://gridmix.example.org:8080"))
        ));
        assert!(!cross_origin(none, &from(Some("none"), None)));
        assert!(cross_origin(none, &from(Some("cross-site"), None)));
        assert!(cross_origin(none, &from(Some("same-site"), None)));
        assert!(cross_origin(none, &from(None, Some("https://evil.test"))));
        let allowed = vec!["https://meet.example.org".to_owned()];
        assert!(!cross_origin(
            &allowed,
            &from(None, Some("https://meet.example.org"))
        ));
        assert!(cross_origin(
            &allowed,
            &from(None, Some("https://evil.test"))
        ));
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
