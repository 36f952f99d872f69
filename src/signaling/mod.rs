//! Transports only. Every transport feeds parsed client messages into the
//! same `session::run_session`, so the protocol is implemented once; `api`
//! is the recording REST API and `layout_api` the layout one, which talk to
//! rooms the same way.

pub mod access;
pub mod api;
pub mod client_address;
pub mod identities;
pub mod layout_api;
pub mod limits;
pub mod poll;
pub mod sequence;
pub mod session;
pub mod ws;

use crate::protocol::ServerMessage;
use crate::room::registry::Registry;
use limits::Limits;
use session::{Inbound, SessionTable};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// How signaling is guarded, from the serve flags.
#[derive(Debug, Clone, Default)]
pub struct SignalingSettings {
    pub limits: Limits,
    /// Room tokens signed with this are required when set.
    pub auth_secret: Option<String>,
    /// The HTTP API wants this as a bearer token when set.
    pub api_secret: Option<String>,
    /// Participants one token identity may be in a room as at once; a newer
    /// join replaces the oldest.
    pub max_connections_per_identity: usize,
    /// Origins browsers may connect from; empty: any.
    pub allowed_origins: Vec<String>,
    /// Host header values this server answers; empty: any.
    pub public_hosts: Vec<String>,
    /// Reverse proxies whose X-Forwarded-For says who the client is.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// With auth: recordings are reached through signed URLs, valid this long.
    pub recording_urls: Option<RecordingUrls>,
}

/// How a server with auth hands out recording URLs.
#[derive(Debug, Clone)]
pub struct RecordingUrls {
    pub signer: crate::recording::signed_url::UrlSigner,
    pub ttl: std::time::Duration,
}

impl SignalingSettings {
    /// A recording's URL as a client gets it: signed, valid for the TTL from
    /// now, on a server with auth; as it is otherwise.
    pub fn published_url(&self, url: &str) -> String {
        match &self.recording_urls {
            Some(urls) => urls.signer.sign(
                url,
                crate::auth::unix_now().saturating_add(urls.ttl.as_secs()),
            ),
            None => url.to_owned(),
        }
    }
}

/// What every transport shares: the rooms, the settings, the sessions that
/// can be resumed.
pub struct Signaling {
    pub registry: Arc<Registry>,
    pub settings: SignalingSettings,
    pub sessions: SessionTable,
    pub polls: poll::PollTable,
    pub identities: identities::IdentityTable,
}

impl Signaling {
    pub fn new(registry: Arc<Registry>, settings: SignalingSettings) -> Arc<Self> {
        Arc::new(Signaling {
            registry,
            settings,
            sessions: SessionTable::default(),
            polls: poll::PollTable::default(),
            identities: identities::IdentityTable::default(),
        })
    }
}

/// What every HTTP handler can reach. It lives here, not in `server`, so
/// the server depends on signaling and never the other way round.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub signaling: Arc<Signaling>,
    /// Becomes true when the server is shutting down.
    pub shutdown: watch::Receiver<bool>,
}

/// One client connection as a session sees it: messages in, messages out.
/// Dropping either end tells the other side the connection is gone.
pub struct Transport {
    pub inbound: mpsc::Receiver<Inbound>,
    pub outbox: mpsc::Sender<ServerMessage>,
    /// The client's address, as the connection came in.
    pub client: Option<std::net::IpAddr>,
}

/// Starts a session for a new connection; returns the transport's ends.
pub fn open_session(
    signaling: &Arc<Signaling>,
    client: Option<std::net::IpAddr>,
) -> (mpsc::Sender<Inbound>, mpsc::Receiver<ServerMessage>) {
    let (inbound_tx, inbound) = mpsc::channel(32);
    let (outbox, outgoing) = mpsc::channel(crate::room::OUTBOX_CAPACITY);
    tokio::spawn(session::run_session(
        signaling.clone(),
        Transport {
            inbound,
            outbox,
            client,
        },
    ));
    (inbound_tx, outgoing)
}
