//! The HTTP connection layer: accepts TCP connections, refuses a client
//! address that already holds too many, and serves each with hyper under a
//! timer, so a connection that never finishes its request headers, or sits
//! idle between requests, is closed. (`axum::serve` runs hyper without a
//! timer, which turns its header-read timeout off.)

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How HTTP connections are bounded, from the serve flags.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// A request's headers must arrive within this; an idle keep-alive
    /// connection waiting for its next request is closed after it too.
    pub header_timeout: Duration,
    /// A request's body must arrive within this.
    pub body_timeout: Duration,
    /// Most connections open at once from one client address.
    pub max_connections_per_ip: usize,
    /// Reverse proxies, whose connections carry many clients: not capped.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections_per_ip: 64,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Open connections per client address. Pure bookkeeping.
#[derive(Debug, Default)]
pub struct PerAddress {
    open: HashMap<IpAddr, usize>,
}

impl PerAddress {
    /// Counts one more connection from `ip`, unless it already has `cap`.
    pub fn try_open(&mut self, ip: IpAddr, cap: usize) -> bool {
        let open = self.open.entry(ip).or_default();
        if *open >= cap {
            return false;
        }
        *open += 1;
        true
    }

    pub fn close(&mut self, ip: IpAddr) {
        if let Some(open) = self.open.get_mut(&ip) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                self.open.remove(&ip);
            }
        }
    }

    pub fn open(&self, ip: IpAddr) -> usize {
        self.open.get(&ip).copied().unwrap_or(0)
    }
}

/// One counted connection; uncounted when the last clone is dropped. Each
/// request carries a clone (an extension), so a connection upgraded to a
/// WebSocket, which outlives hyper's connection task, stays counted for as
/// long as the socket's task holds it.
#[derive(Clone)]
pub struct ConnectionSlot {
    _slot: Arc<Slot>,
}

struct Slot {
    table: Arc<Mutex<PerAddress>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .close(self.ip);
    }
}

/// Said to a client address over its connection limit before it is closed.
fn too_many_response() -> Vec<u8> {
    let body = r#"{"type":"error","code":"too-many-connections","message":"This address has too many connections open to this server."}"#;
    format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `app` on `listener` until `shutdown` turns true, then lets every
/// open connection finish its request and waits for them.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: HttpSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let table = Arc::new(Mutex::new(PerAddress::default()));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        while connections.try_join_next().is_some() {}
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let cap = if settings.trusted_proxies.contains(&remote.ip()) {
            usize::MAX
        } else {
            settings.max_connections_per_ip
        };
        let admitted = table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_open(remote.ip(), cap);
        if !admitted {
            tracing::debug!("{} has too many connections open; refused", remote.ip());
            // Best effort, never waiting on the client.
            let _ = stream.try_write(&too_many_response());
            continue;
        }
        let slot = ConnectionSlot {
            _slot: Arc::new(Slot {
                table: table.clone(),
                ip: remote.ip(),
            }),
        };
        connections.spawn(serve_connection(
            stream,
            remote,
            app.clone(),
            settings.header_timeout,
            shutdown.clone(),
            slot,
        ));
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    app: Router,
    header_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
    slot: ConnectionSlot,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        request.extensions_mut().insert(slot.clone());
        tower::ServiceExt::oneshot(app.clone(), request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::trace!("connection from {remote} ended: {e}");
            }
            return;
        }
        _ = shutdown.wait_for(|stop| *stop) => {}
    }
    // Shutting down: the request in progress is answered, then it closes.
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_own_connection_limit() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut table = PerAddress::default();
        assert!(table.try_open(a, 2));
        assert!(table.try_open(a, 2));
        assert!(!table.try_open(a, 2));
        assert!(table.try_open(b, 2));
        table.close(a);
        assert_eq!(table.open(a), 1);
        assert!(table.try_open(a, 2));
        table.close(a);
        table.close(a);
        table.close(a);
        assert_eq!(table.open(a), 0);
        assert!(
            !table.open.contains_key(&a),
            "an address with none open is forgotten"
        );
    }

    #[test]
    fn the_refusal_is_a_complete_response() {
        let response = too_many_response();
        let text = std::str::from_utf8(&response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], "too-many-connections");
    }
}
