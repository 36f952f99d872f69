//! A hand-driven WebSocket signaling client, for what no well-behaved client
//! would send and for checking exact message sequences. Every wait has a
//! deadline, so a server that keeps talking without ever saying what a test
//! waits for fails the test instead of hanging it.

use futures::{SinkExt, StreamExt};
use gridmix::protocol::{ErrorCode, ServerMessage};
use gridmix::server::Server;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long any one wait for the server may take.
pub const RAW_TIMEOUT: Duration = Duration::from_secs(30);

/// How the server ended a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// A WebSocket close frame: the server closed it on purpose.
    CloseFrame,
    /// The TCP connection ended (or broke) without a close frame.
    Dropped,
}

pub struct WsClient {
    pub ws: Ws,
}

impl WsClient {
    pub async fn connect(server: &Server) -> WsClient {
        Self::connect_url(&server.ws_url()).await
    }

    pub async fn connect_url(url: &str) -> WsClient {
        Self::connect_with_headers(url, &[]).await
    }

    /// As a client behind a reverse proxy appears: with `X-Forwarded-For`.
    pub async fn connect_forwarded_for(server: &Server, forwarded_for: &str) -> WsClient {
        Self::connect_with_headers(&server.ws_url(), &[("x-forwarded-for", forwarded_for)]).await
    }

    pub async fn connect_with_headers(url: &str, headers: &[(&'static str, &str)]) -> WsClient {
        let mut request = url.into_client_request().expect("a WebSocket URL");
        for (name, value) in headers {
            request
                .headers_mut()
                .append(*name, value.parse().expect("a header value"));
        }
        let (ws, _) = tokio::time::timeout(RAW_TIMEOUT, tokio_tungstenite::connect_async(request))
            .await
            .expect("the WebSocket connects in time")
            .expect("websocket connects");
        WsClient { ws }
    }

    pub async fn send(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("send");
    }

    /// Sends what the server may refuse mid-frame (it closes the socket as
    /// soon as a frame's header says it is too large): the send may fail.
    pub async fn send_refusable(&mut self, text: &str) {
        let _ = self.ws.send(Message::Text(text.to_owned().into())).await;
    }

    pub async fn send_frame(&mut self, frame: Message) {
        self.ws.send(frame).await.expect("send");
    }

    /// The next protocol message before `deadline`; Err(how) once the
    /// server ended the connection, or None at the deadline.
    async fn next_before(&mut self, deadline: Instant) -> Option<Result<ServerMessage, Ending>> {
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return Some(Ok(serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("not a protocol message ({e}): {text}"))));
                }
                Some(Ok(Message::Close(_))) => return Some(Err(Ending::CloseFrame)),
                None | Some(Err(_)) => return Some(Err(Ending::Dropped)),
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next protocol message, or None once the server ended the
    /// connection.
    pub async fn try_recv(&mut self) -> Option<ServerMessage> {
        self.next_before(Instant::now() + RAW_TIMEOUT)
            .await
            .expect("a message or a close in time")
            .ok()
    }

    pub async fn recv(&mut self) -> ServerMessage {
        self.try_recv().await.expect("socket open")
    }

    /// Skips messages until one satisfies `wanted`, within RAW_TIMEOUT in
    /// all; returns it with the messages skipped.
    pub async fn recv_until(
        &mut self,
        what: &str,
        wanted: impl Fn(&ServerMessage) -> bool,
    ) -> (ServerMessage, Vec<ServerMessage>) {
        let deadline = Instant::now() + RAW_TIMEOUT;
        let mut skipped = Vec::new();
        loop {
            match self.next_before(deadline).await {
                Some(Ok(message)) if wanted(&message) => return (message, skipped),
                Some(Ok(message)) => skipped.push(message),
                Some(Err(ending)) => panic!(
                    "waiting for {what}: the connection ended ({ending:?}) after {}",
                    summary(&skipped)
                ),
                None => panic!(
                    "waiting for {what}: not within {RAW_TIMEOUT:?}; got {}",
                    summary(&skipped)
                ),
            }
        }
    }

    /// The next error, skipping other messages; checks its code and that it
    /// says something.
    pub async fn expect_error(&mut self, code: ErrorCode) -> String {
        let (error, _) = self
            .recv_until(&format!("error {}", code.as_str()), |m| {
                matches!(m, ServerMessage::Error { .. })
            })
            .await;
        let ServerMessage::Error { code: got, message } = error else {
            unreachable!()
        };
        assert_eq!(got, code, "message: {message}");
        assert!(!message.is_empty(), "{} without a sentence", got.as_str());
        message
    }

    /// Reads until the server ends the connection; says how it did.
    pub async fn ending(&mut self) -> Ending {
        let deadline = Instant::now() + RAW_TIMEOUT;
        loop {
            match self.next_before(deadline).await {
                Some(Ok(_)) => {}
                Some(Err(ending)) => return ending,
                None => panic!("the server kept the connection open for {RAW_TIMEOUT:?}"),
            }
        }
    }

    /// Sends one JSON message and expects "joined"; returns its participant
    /// id and resume token.
    pub async fn join_with(&mut self, join: serde_json::Value) -> (String, String) {
        self.send(&join.to_string()).await;
        match self.recv().await {
            ServerMessage::Joined {
                participant,
                resume_token,
                ..
            } => (
                participant,
                resume_token.expect("joined has a resume token"),
            ),
            other => panic!("expected joined to {join}, got {other:?}"),
        }
    }

    /// Joins `room` in `mode` ("mcu", "sfu", "mesh").
    pub async fn join(&mut self, room: &str, name: &str, mode: &str) -> (String, String) {
        self.join_with(serde_json::json!({"type":"join","room":room,"name":name,"mode":mode}))
            .await
    }

    /// Leaves as a browser does: "leave", a close frame, and the server's
    /// close awaited. Dropping the socket right after "leave" with messages
    /// still unread makes the kernel reset the connection, which can discard
    /// the leave before the server reads it (seen under load): the server
    /// then rightly keeps the participant for the resume grace.
    pub async fn leave(mut self) {
        self.send(r#"{"type":"leave"}"#).await;
        let _ = self.ws.send(Message::Close(None)).await;
        self.ending().await;
    }
}

/// The last few of `messages`, each cut short, for a failure's report.
fn summary(messages: &[ServerMessage]) -> String {
    let shown: Vec<String> = messages
        .iter()
        .skip(messages.len().saturating_sub(5))
        .map(|m| format!("{m:?}").chars().take(300).collect())
        .collect();
    format!(
        "{} messages, the last: [{}]",
        messages.len(),
        shown.join(", ")
    )
}

/// Connects a raw client and joins it: (client, participant id).
pub async fn joined_client(
    server: &Server,
    room: &str,
    name: &str,
    mode: &str,
) -> (WsClient, String) {
    let mut client = WsClient::connect(server).await;
    let (id, _) = client.join(room, name, mode).await;
    (client, id)
}
