//! The HTTP server: assets at /, signaling at /ws, health at /healthz, the
//! room and recording API under /api, recordings at /recordings/.

use crate::config::Config;
use crate::ids::RoomId;
use crate::room::RoomSnapshot;
use crate::room::registry::Registry;
use crate::signaling::api;
use crate::signaling::{AppState, Signaling};
use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::services::ServeDir;

/// A running server; `shut_down` stops it cleanly.
pub struct Server {
    addr: SocketAddr,
    registry: Arc<Registry>,
    signaling: Arc<Signaling>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// Binds `config.listen` (port 0 picks a free port) and starts serving.
    pub async fn start(config: Config) -> Result<Server> {
        gst::init().context("initialising GStreamer")?;
        crate::media::preflight::check_elements().map_err(anyhow::Error::msg)?;
        let registry = Registry::new(config.rooms.clone());
        let signaling = Signaling::new(registry.clone(), config.signaling.clone());
        if signaling.settings.auth_secret.is_none() {
            tracing::warn!(
                "no --auth-secret: anyone who can reach this server can join any room and read /api; set --auth-secret (or GRIDMIX_AUTH_SECRET) on a public server"
            );
        }
        let (stop, shutdown) = watch::channel(false);
        let state = AppState {
            registry: registry.clone(),
            signaling: signaling.clone(),
            shutdown: shutdown.clone(),
        };
        let routes = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/ws", get(crate::signaling::ws::upgrade))
            .merge(crate::signaling::poll::routes())
            .route("/api/rooms", get(list_rooms))
            .route("/api/rooms/{room}", get(show_room))
            .route(
                "/api/rooms/{room}/recordings",
                get(api::list).post(api::start),
            )
            .route(
                "/api/rooms/{room}/layout",
                get(crate::signaling::layout_api::show).put(crate::signaling::layout_api::set),
            )
            .route(
                "/api/rooms/{room}/recordings/{id}",
                get(api::show).delete(api::stop),
            )
            // Read-only: finished files, files being written, live HLS.
            .nest("/recordings", {
                let dir = Arc::new(config.record_dir.clone());
                Router::new()
                    .fallback(
                        move |State(state): State<AppState>, request: axum::extract::Request| {
                            let dir = dir.clone();
                            async move { crate::recording_files::serve(state, &dir, request).await }
                        },
                    )
                    .layer(axum::middleware::from_fn(recording_headers))
            })
            .fallback_service(ServeDir::new(&config.assets_dir))
            .with_state(state);
        // Around the whole router, after every route is added: each path
        // under /api, whichever route serves it, is behind the API secret.
        let app = routes
            .layer(axum::middleware::from_fn_with_state(
                signaling.clone(),
                crate::signaling::access::guard,
            ))
            .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
                config.http.body_timeout,
            ));
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(crate::connections::serve(
            listener,
            app,
            config.http.clone(),
            shutdown,
        ));
        tracing::info!("gridmix serving on http://{addr}");
        Ok(Server {
            addr,
            registry,
            signaling,
            stop,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn signaling(&self) -> &Arc<Signaling> {
        &self.signaling
    }

    /// The long-poll endpoint, http://host:port/signal.
    pub fn poll_url(&self) -> String {
        format!("http://{}/signal", self.addr)
    }

    /// Closes every socket, finishes every recording's file, stops every
    /// room's pipeline, stops serving.
    pub async fn shut_down(self) {
        let _ = self.stop.send(true);
        self.signaling.polls.close_all();
        self.registry.shutdown().await;
        let _ = self.task.await;
        tracing::info!("gridmix stopped");
    }
}

async fn list_rooms(State(state): State<AppState>) -> axum::Json<Vec<RoomSnapshot>> {
    axum::Json(state.registry.snapshot().await)
}

/// One room: its participants, and in an MCU room the rung each receiver
/// is on and why (what the browser client's statistics table shows).
async fn show_room(State(state): State<AppState>, Path(room): Path<String>) -> Response {
    let snapshot = match RoomId::parse(&room) {
        Some(id) => state.registry.snapshot_of(&id).await,
        None => None,
    };
    match snapshot {
        Some(snapshot) => axum::Json(snapshot).into_response(),
        None => api::error_response(
            404,
            "unknown-room",
            &format!(
                "No room \"{}\" is open.",
                room.chars().take(64).collect::<String>()
            ),
        ),
    }
}

/// The content type a recording file is served with (where the generic
/// table says something players do not expect), and whether it must not be
/// cached: a live playlist changes every segment.
fn recording_file_headers(path: &str) -> (Option<&'static str>, bool) {
    if path.ends_with(".m3u8") {
        (Some("application/vnd.apple.mpegurl"), true)
    } else if path.ends_with(".ts") {
        (Some("video/mp2t"), false)
    } else {
        (None, false)
    }
}

async fn recording_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let (content_type, no_cache) = recording_file_headers(request.uri().path());
    let mut response = next.run(request).await;
    if response.status().is_success() {
        let headers = response.headers_mut();
        if let Some(content_type) = content_type {
            headers.insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static(content_type),
            );
        }
        if no_cache {
            headers.insert(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-cache"),
            );
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::recording_file_headers;

    #[test]
    fn live_playlists_are_not_cached_and_segments_say_what_they_are() {
        assert_eq!(
            recording_file_headers("/r-1/index.m3u8"),
            (Some("application/vnd.apple.mpegurl"), true)
        );
        assert_eq!(
            recording_file_headers("/r-1/segment00003.ts"),
            (Some("video/mp2t"), false)
        );
        assert_eq!(recording_file_headers("/r-1.webm"), (None, false));
    }
}
