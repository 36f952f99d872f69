//! The HTTP server: assets at /, signaling at /ws, health at /healthz.

use crate::config::Config;
use crate::room::RoomSnapshot;
use crate::room::registry::Registry;
use crate::signaling::Signaling;
use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::services::ServeDir;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub signaling: Arc<Signaling>,
    /// Becomes true when the server is shutting down.
    pub shutdown: watch::Receiver<bool>,
}

/// A running server; `shut_down` stops it cleanly.
pub struct Server {
    addr: SocketAddr,
    registry: Arc<Registry>,
    signaling: Arc<Signaling>,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
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
            .fallback_service(ServeDir::new(&config.assets_dir))
            .with_state(state);
        // Around the whole router, after every route is added: each path
        // under /api, whichever route serves it, is behind the API secret.
        let app = routes.layer(axum::middleware::from_fn_with_state(
            signaling.clone(),
            crate::signaling::access::require_api_secret,
        ));
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        let mut until_stopped = shutdown;
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = until_stopped.wait_for(|stop| *stop).await;
                })
                .await
        });
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

    /// Closes every socket, stops every room's pipeline, stops serving.
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
