//! How the bot reaches the server: a WebSocket at /ws, or the long-poll
//! transport at /signal. Both carry the same messages; the bot counts the
//! session messages it receives so that it can resume after a drop.

use crate::protocol::{ClientMessage, ServerMessage};
use crate::signaling::poll::{Numbered, Opened, Polled};
use anyhow::{Context, Result, anyhow, bail};
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// How long a closing bot waits for the server to answer its close.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(5);

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Which transport a bot uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportKind {
    #[default]
    WebSocket,
    LongPoll,
}

/// The long-poll endpoint beside a `ws://host:port/ws` server URL.
pub fn poll_url(server: &str) -> String {
    let rest = server
        .strip_prefix("ws://")
        .map(|r| format!("http://{r}"))
        .or_else(|| {
            server
                .strip_prefix("wss://")
                .map(|r| format!("https://{r}"))
        })
        .unwrap_or_else(|| server.to_owned());
    match rest.strip_suffix("/ws") {
        Some(base) => format!("{base}/signal"),
        None => format!("{}/signal", rest.trim_end_matches('/')),
    }
}

/// A signaling connection, either kind.
pub enum Connection {
    Ws(Box<WsStream>),
    Poll(PollClient),
}

impl Connection {
    /// Connects and sends `first` (a join or a resume).
    pub async fn open(kind: TransportKind, server: &str, first: &ClientMessage) -> Result<Self> {
        match kind {
            TransportKind::WebSocket => {
                let (mut ws, _) = tokio_tungstenite::connect_async(server)
                    .await
                    .with_context(|| format!("connecting to {server}"))?;
                send_ws(&mut ws, first).await?;
                Ok(Connection::Ws(Box::new(ws)))
            }
            TransportKind::LongPoll => Ok(Connection::Poll(
                PollClient::open(&poll_url(server), first).await?,
            )),
        }
    }

    pub async fn send(&mut self, message: &ClientMessage) -> Result<()> {
        match self {
            Connection::Ws(ws) => send_ws(ws, message).await,
            Connection::Poll(poll) => poll.send(message).await,
        }
    }

    /// The next server message; None once the connection is closed.
    /// Cancel-safe.
    pub async fn next(&mut self) -> Result<Option<ServerMessage>> {
        match self {
            Connection::Ws(ws) => next_ws(ws).await,
            Connection::Poll(poll) => Ok(poll.incoming.recv().await),
        }
    }

    /// Leaves politely: a WebSocket close, or DELETE for long-poll. The
    /// close handshake is finished (the server's close awaited) before the
    /// socket goes: closing it with the server's messages still unread makes
    /// the kernel reset the connection, and a reset can discard what was
    /// sent just before it, "leave" included (the server then keeps the
    /// participant for the resume grace, as for any cut connection).
    pub async fn close(&mut self) {
        match self {
            Connection::Ws(ws) => {
                let _ = SinkExt::close(ws).await;
                let drained = async { while let Some(Ok(_)) = ws.next().await {} };
                let _ = tokio::time::timeout(CLOSE_HANDSHAKE, drained).await;
            }
            Connection::Poll(poll) => poll.close().await,
        }
    }
}

async fn send_ws(ws: &mut WsStream, message: &ClientMessage) -> Result<()> {
    let text = serde_json::to_string(message)?;
    ws.send(Message::Text(text.into()))
        .await
        .context("sending to the server")
}

async fn next_ws(ws: &mut WsStream) -> Result<Option<ServerMessage>> {
    while let Some(frame) = ws.next().await {
        match frame.context("reading from the server")? {
            Message::Text(text) => {
                return serde_json::from_str(text.as_str())
                    .map(Some)
                    .with_context(|| format!("server sent an unknown message: {text}"));
            }
            Message::Close(_) => return Ok(None),
            _ => {}
        }
    }
    Ok(None)
}

/// The long-poll client: a task polls `GET /signal/{id}?after=N` in a loop
/// and hands the messages over in order; sends are `POST /signal/{id}`.
pub struct PollClient {
    http: reqwest::Client,
    url: String,
    incoming: mpsc::Receiver<ServerMessage>,
    poller: JoinHandle<()>,
}

impl PollClient {
    async fn open(base: &str, first: &ClientMessage) -> Result<PollClient> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(40))
            .build()?;
        let response = http
            .post(base)
            .json(first)
            .send()
            .await
            .with_context(|| format!("POST {base}"))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            // The error message, as a WebSocket would have sent it.
            if let Ok(message) = serde_json::from_str::<ServerMessage>(&body) {
                let (tx, incoming) = mpsc::channel(1);
                let _ = tx.try_send(message);
                return Ok(PollClient {
                    http,
                    url: base.to_owned(),
                    incoming,
                    poller: tokio::spawn(async {}),
                });
            }
            bail!("POST {base}: {status}: {body}");
        }
        let opened: Opened = response.json().await.context("reading POST /signal")?;
        let url = format!("{base}/{}", opened.session);
        let (tx, incoming) = mpsc::channel(1024);
        let after = deliver(&tx, 0, opened.messages).await;
        let poller = tokio::spawn(poll_loop(http.clone(), url.clone(), tx, after));
        Ok(PollClient {
            http,
            url,
            incoming,
            poller,
        })
    }

    async fn send(&mut self, message: &ClientMessage) -> Result<()> {
        let response = self
            .http
            .post(&self.url)
            .json(message)
            .send()
            .await
            .context("POST to the long-poll session")?;
        if !response.status().is_success() {
            bail!("POST {}: {}", self.url, response.status());
        }
        Ok(())
    }

    async fn close(&mut self) {
        let _ = self.http.delete(&self.url).send().await;
        self.poller.abort();
    }
}

impl Drop for PollClient {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// Hands over the messages numbered after `after`, in order; returns the
/// newest number handed over.
async fn deliver(tx: &mpsc::Sender<ServerMessage>, mut after: u64, messages: Vec<Numbered>) -> u64 {
    for n in messages {
        if n.seq == after + 1 {
            if tx.send(n.message).await.is_err() {
                break;
            }
            after = n.seq;
        }
    }
    after
}

async fn poll_loop(
    http: reqwest::Client,
    url: String,
    tx: mpsc::Sender<ServerMessage>,
    mut after: u64,
) {
    let mut failures = 0u32;
    loop {
        let result = async {
            let response = http.get(&url).query(&[("after", after)]).send().await?;
            if response.status() == reqwest::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !response.status().is_success() {
                return Err(anyhow!("GET {url}: {}", response.status()));
            }
            Ok(Some(response.json::<Polled>().await?))
        }
        .await;
        match result {
            Ok(Some(polled)) => {
                failures = 0;
                after = deliver(&tx, after, polled.messages).await;
                if polled.closed || tx.is_closed() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                failures += 1;
                tracing::debug!("bot long-poll: {e:#}");
                // The server keeps unacknowledged messages: asking again
                // with the same `after` loses nothing.
                if failures > 50 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_url_sits_beside_the_websocket_url() {
        assert_eq!(
            poll_url("ws://127.0.0.1:8080/ws"),
            "http://127.0.0.1:8080/signal"
        );
        assert_eq!(
            poll_url("wss://meet.example.org/ws"),
            "https://meet.example.org/signal"
        );
    }
}
