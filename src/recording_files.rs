//! The record directory over HTTP, read-only, at /recordings/. On a server
//! with auth a file is reached through a signed URL
//! (`/recordings/s/<expires>/<signature>/<entry>...`, see
//! recording/signed_url.rs) or with the API bearer; without auth, by name.
//! Nothing is served through a symlink.

use crate::protocol::{ErrorCode, ProtocolError};
use crate::recording::signed_url::Refusal;
use crate::signaling::AppState;
use crate::signaling::access::{error_response, has_api_bearer};
use axum::extract::Request;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::path::Path;
use tower_http::services::ServeDir;

/// Serves a request whose path is relative to /recordings (as nested).
pub async fn serve(state: AppState, dir: &Path, mut request: Request) -> Response {
    let settings = &state.signaling.settings;
    let path = request.uri().path().to_owned();
    let relative = if let Some(signed) = path.strip_prefix("/s/") {
        let Some(urls) = &settings.recording_urls else {
            return StatusCode::NOT_FOUND.into_response();
        };
        match urls.signer.verify(signed, crate::auth::unix_now()) {
            Ok(relative) => relative.to_owned(),
            Err(refusal) => return refused(refusal),
        }
    } else {
        if settings.recording_urls.is_some() && !has_api_bearer(settings, request.headers()) {
            return error_response(&ProtocolError::new(
                ErrorCode::Unauthorized,
                "Recordings on this server are reached through the signed URL the API and the room hand out, or with the API bearer.",
            ));
        }
        path.trim_start_matches('/').to_owned()
    };
    if through_symlink(dir, &relative) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Ok(uri) = format!("/{relative}").parse::<Uri>() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    *request.uri_mut() = uri;
    match tower::ServiceExt::oneshot(ServeDir::new(dir), request).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(never) => match never {},
    }
}

fn refused(refusal: Refusal) -> Response {
    let message = match refusal {
        Refusal::Expired => "This recording link has expired; ask for a new one.",
        Refusal::BadSignature => "This recording link is not valid.",
        Refusal::Malformed => "This is not a recording link.",
    };
    error_response(&ProtocolError::new(ErrorCode::Forbidden, message))
}

/// Whether `relative` (URL-encoded, under `dir`) passes through a symlink:
/// any of its components, or the file itself. Paths that do not exist are
/// left to the file server (404).
pub fn through_symlink(dir: &Path, relative: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(relative).decode_utf8_lossy();
    let mut at = dir.to_path_buf();
    for component in decoded.split('/').filter(|c| !c.is_empty()) {
        at.push(component);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::through_symlink;

    #[test]
    fn symlinks_anywhere_on_the_path_are_found() {
        let dir = std::env::temp_dir().join(format!("gridmix-symlinks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("room-1")).unwrap();
        std::fs::write(dir.join("room-1/index.m3u8"), "#EXTM3U").unwrap();
        std::fs::write(dir.join("a.webm"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("evil.webm")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("evil-dir")).unwrap();
        assert!(!through_symlink(&dir, "a.webm"));
        assert!(!through_symlink(&dir, "room-1/index.m3u8"));
        assert!(!through_symlink(&dir, "missing.webm"));
        assert!(through_symlink(&dir, "evil.webm"));
        assert!(through_symlink(&dir, "evil-dir/passwd"));
        assert!(through_symlink(&dir, "evil%2Ddir/passwd"), "decoded first");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
