//! TURN REST API ephemeral credentials, as coturn's `use-auth-secret`
//! checks them: username `expiry:identity`, password
//! base64(HMAC-SHA1(secret, username)). Pure.

use crate::protocol::IceServer;
use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use std::time::Duration;

/// A TURN server and the secret it shares with gridmix.
#[derive(Debug, Clone)]
pub struct TurnSettings {
    /// As clients write it: `turn:host:port` (optionally `?transport=udp|tcp`)
    /// or `turns:host:port`.
    pub url: String,
    pub secret: String,
    /// How long handed-out credentials stay valid.
    pub ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    pub username: String,
    pub password: String,
}

/// The credentials for `identity`, valid until `expiry_unix`.
pub fn credentials(secret: &str, identity: &str, expiry_unix: u64) -> TurnCredentials {
    let username = format!("{expiry_unix}:{identity}");
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    TurnCredentials { username, password }
}

/// A `--turn` value: `turn:host:port`, `turns:host:port` or `host:port`,
/// with an optional `?transport=udp|tcp`. Returns it in `turn:` form.
pub fn normalize_url(s: &str) -> Result<String, String> {
    let (scheme, rest) = match s.split_once(':') {
        Some(("turn", rest)) => ("turn", rest),
        Some(("turns", rest)) => ("turns", rest),
        _ => ("turn", s),
    };
    let rest = rest.trim_start_matches("//");
    let (hostport, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    let (host, port) = hostport
        .rsplit_once(':')
        .ok_or_else(|| format!("\"{s}\" has no port: write turn:HOST:PORT"))?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    if host.is_empty() || !port_ok || host.contains(['/', '@', ' ']) {
        return Err(format!("\"{s}\" is not turn:HOST:PORT"));
    }
    if let Some(q) = query
        && !matches!(q, "transport=udp" | "transport=tcp")
    {
        return Err(format!(
            "\"{s}\": the only option is ?transport=udp or ?transport=tcp"
        ));
    }
    Ok(match query {
        Some(q) => format!("{scheme}:{host}:{port}?{q}"),
        None => format!("{scheme}:{host}:{port}"),
    })
}

impl TurnSettings {
    fn credentials_for(&self, identity: &str, now_unix: u64) -> TurnCredentials {
        credentials(&self.secret, identity, now_unix + self.ttl.as_secs())
    }

    /// Seconds after handing out credentials that fresh ones are sent:
    /// half their lifetime, so a client always holds some with time left
    /// (a TURN server checks them when an allocation is made, not after).
    pub fn renew_after_secs(&self) -> u64 {
        (self.ttl.as_secs() / 2).max(1)
    }

    /// The RTCIceServer entry handed to a client in "joined".
    pub fn ice_server(&self, identity: &str, now_unix: u64) -> IceServer {
        let c = self.credentials_for(identity, now_unix);
        IceServer {
            urls: vec![self.url.clone()],
            username: Some(c.username),
            credential: Some(c.password),
        }
    }

    /// The same server as webrtcbin's `turn-server` URI:
    /// `turn://user:pass@host:port`, user and password percent-encoded (the
    /// username has a ':' and the base64 password may have '+', '/', '=').
    pub fn webrtcbin_uri(&self, identity: &str, now_unix: u64) -> String {
        ice_server_uri(&self.url, &self.credentials_for(identity, now_unix))
    }
}

/// A client-form TURN url (`turn:host:port[?transport=..]`) with
/// credentials, as webrtcbin's `turn-server` URI.
pub fn ice_server_uri(url: &str, c: &TurnCredentials) -> String {
    let (scheme, rest) = url.split_once(':').unwrap_or(("turn", url));
    let user = utf8_percent_encode(&c.username, NON_ALPHANUMERIC);
    let pass = utf8_percent_encode(&c.password, NON_ALPHANUMERIC);
    format!("{scheme}://{user}:{pass}@{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_match_the_turn_rest_api_formula() {
        // Worked out independently: printf '1433895918:alice' |
        // openssl dgst -sha1 -hmac 'north' -binary | base64
        let c = credentials("north", "alice", 1433895918);
        assert_eq!(c.username, "1433895918:alice");
        assert_eq!(c.password, "RqMvcGPYTJMGThVLSi4amT4zFtI=");
    }

    #[test]
    fn urls_are_normalized_and_checked() {
        assert_eq!(
            normalize_url("127.0.0.1:3478").unwrap(),
            "turn:127.0.0.1:3478"
        );
        assert_eq!(
            normalize_url("turn:turn.example.org:3478?transport=tcp").unwrap(),
            "turn:turn.example.org:3478?transport=tcp"
        );
        assert_eq!(
            normalize_url("turns:turn.example.org:5349").unwrap(),
            "turns:turn.example.org:5349"
        );
        for bad in [
            "turn:host",
            "turn:host:0",
            "turn:host:99999",
            "turn::3478",
            "turn:u@host:3478",
            "turn:host:3478?transport=sctp",
        ] {
            assert!(normalize_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_webrtcbin_uri_escapes_the_credentials() {
        let settings = TurnSettings {
            url: "turn:127.0.0.1:3478?transport=udp".into(),
            secret: "north".into(),
            ttl: Duration::from_secs(100),
        };
        let uri = settings.webrtcbin_uri("alice", 1433895818);
        assert_eq!(
            uri,
            "turn://1433895918%3Aalice:RqMvcGPYTJMGThVLSi4amT4zFtI%3D@127.0.0.1:3478?transport=udp"
        );
        let server = settings.ice_server("alice", 1433895818);
        assert_eq!(server.username.as_deref(), Some("1433895918:alice"));
        assert_eq!(
            server.credential.as_deref(),
            Some("RqMvcGPYTJMGThVLSi4amT4zFtI=")
        );
        assert_eq!(server.urls, vec!["turn:127.0.0.1:3478?transport=udp"]);
    }
}
