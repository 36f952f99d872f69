//! Attacks from the security review, each against a real server on
//! loopback: connections that never finish their headers or bodies or sit
//! idle, one address opening too many connections, a WebSocket frame that
//! announces megabytes and sends part of them, client numbers at the edge of
//! u64, DNS rebinding, other sites' pages posting to /api, one address
//! opening every room. After each, the process's threads and descriptors are back where
//! they were and a normal client joins at once. One test per process, so
//! nothing else runs while threads and descriptors are counted.

mod common;

use common::*;
use gridmix::auth::{LEEWAY_SECS, issue_token, unix_now};
use gridmix::config::ServeArgs;
use gridmix::protocol::ErrorCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(30);
const SECRET: &str = "attack suite";
/// Threads and descriptors the process may gain meanwhile without anything
/// being held for the attacks: a runtime worker or a GLib pool thread
/// waking up. Each attack opens dozens of connections.
const SLACK: usize = 4;
/// The timeouts of the server under attack; short, so the test is quick.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
const BODY_TIMEOUT: Duration = Duration::from_secs(1);

/// Reads until the server closes the connection, or fails after `TIMEOUT`.
/// Returns what it said first (a timeout response, or nothing).
async fn until_closed(stream: &mut TcpStream, what: &str) -> String {
    let mut said = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => said.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(TIMEOUT, read_all)
        .await
        .unwrap_or_else(|_| panic!("{what}: the server kept the connection open for {TIMEOUT:?}"));
    String::from_utf8_lossy(&said).into_owned()
}

async fn connect(server: &gridmix::server::Server) -> TcpStream {
    TcpStream::connect(server.local_addr()).await.unwrap()
}

/// Fifty connections that send half a request head and then nothing.
async fn half_headers(server: &gridmix::server::Server) {
    let mut streams = Vec::new();
    for _ in 0..50 {
        let mut stream = connect(server).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        streams.push(stream);
    }
    for stream in &mut streams {
        until_closed(stream, "half a header").await;
    }
}

/// Ten requests that announce a body and send a few bytes of it.
async fn slow_bodies(server: &gridmix::server::Server) {
    let mut streams = Vec::new();
    for _ in 0..10 {
        let mut stream = connect(server).await;
        stream
            .write_all(
                b"POST /signal HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"type\":",
            )
            .await
            .unwrap();
        streams.push(stream);
    }
    for stream in &mut streams {
        let said = until_closed(stream, "a slow body").await;
        assert!(
            said.is_empty() || said.starts_with("HTTP/1.1 4"),
            "a slow body was answered {said:?}"
        );
    }
}

/// Ten keep-alive connections that make one request and then sit idle.
async fn idle_keep_alives(server: &gridmix::server::Server) {
    let mut streams = Vec::new();
    for _ in 0..10 {
        let mut stream = connect(server).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        streams.push(stream);
    }
    for stream in &mut streams {
        let said = until_closed(stream, "an idle keep-alive").await;
        assert!(said.starts_with("HTTP/1.1 200"), "{said:?}");
    }
}

/// A WebSocket frame header announcing 15 MiB, then 2 MiB of it: the
/// server closes the socket at the header instead of buffering the frame.
async fn partial_huge_frames(server: &gridmix::server::Server) {
    let mut stream = connect(server).await;
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    // FIN + text; masked, 64-bit length; the mask key.
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&(15u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    stream.write_all(&frame).await.unwrap();
    // Up to 2 MiB, stopping early if the server has already let go.
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..32 {
        if stream.write_all(&chunk).await.is_err() {
            break;
        }
    }
    until_closed(&mut stream, "a frame announcing 15 MiB").await;
}

/// More connections from one address than it may have (WebSockets among
/// them): the extra one is refused at once with a 429, the others are
/// served, and once they close the address may connect again.
async fn too_many_connections(cap: usize) {
    let server = start_server(ServeArgs {
        max_connections_per_ip: cap,
        // Long, so the held connections stay open while counted.
        header_timeout: Duration::from_secs(120),
        join_timeout: Duration::from_secs(120),
        ..ServeArgs::default()
    })
    .await;
    // Half of them WebSockets: an upgraded connection is still counted.
    let mut sockets = Vec::new();
    for _ in 0..cap / 2 {
        sockets.push(WsClient::connect(&server).await);
    }
    let mut held = Vec::new();
    for _ in 0..cap - cap / 2 {
        held.push(connect(&server).await);
    }
    let mut extra = connect(&server).await;
    let said = until_closed(&mut extra, "one connection over the cap").await;
    assert!(
        said.starts_with("HTTP/1.1 429") && said.contains("too-many-connections"),
        "{said:?}"
    );
    // A held connection is still served.
    let mut first = held.remove(0);
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let said = until_closed(&mut first, "a held connection").await;
    assert!(said.starts_with("HTTP/1.1 200"), "{said:?}");
    drop(held);
    drop(sockets);
    eventually(TIMEOUT, || async {
        let status = reqwest::get(format!("http://{}/healthz", server.local_addr()))
            .await?
            .status();
        anyhow::ensure!(status == 200, "{status}");
        Ok(())
    })
    .await
    .expect("the address may connect again once its connections closed");
    server.shut_down().await;
}

/// Long-poll numbers at the edge of u64: `after=u64::MAX` is answered (no
/// overflow that kills the session's task and leaks its entry), and one past
/// it is a clear 400.
async fn huge_poll_numbers(server: &gridmix::server::Server, token: &str) {
    let http = reqwest::Client::new();
    let opened = poll_join(
        server,
        serde_json::json!({"type":"join","room":"attacks","name":"poller","mode":"mesh","token":token}),
    )
    .await;
    let url = format!("{}/{}", server.poll_url(), opened.session);
    // Acknowledges everything; nothing comes after u64::MAX, so the poll
    // waits: give up on it soon, the session must live on.
    let waited = http
        .get(format!("{url}?after={}", u64::MAX))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(
        waited.as_ref().is_err_and(|e| e.is_timeout())
            || waited.as_ref().is_ok_and(|r| r.status().is_success()),
        "{waited:?}"
    );
    let beyond = http
        .get(format!("{url}?after=18446744073709551616"))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 400);
    let body: serde_json::Value = beyond.json().await.unwrap();
    assert_eq!(body["code"], "bad-message", "{body}");
    // The session is still served: a poll after 0 is answered (with the gap
    // the acknowledgement made), not "unknown session".
    let again = http.get(format!("{url}?after=0")).send().await.unwrap();
    assert_ne!(again.status(), 404, "the session's task died");
    let left = http.delete(&url).send().await.unwrap();
    assert!(left.status().is_success(), "{}", left.status());
    wait_until_idle(server, TIMEOUT)
        .await
        .expect("the long-poll session's entry is gone");
}

/// Token claims at the edge: an expiry at the end of time admits (no wrap),
/// a token not valid yet is refused.
async fn edge_tokens(server: &gridmix::server::Server) {
    let sign = |claims: serde_json::Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let forever = sign(serde_json::json!({"room":"attacks","sub":"forever","exp":u64::MAX}));
    let mut client = WsClient::connect(server).await;
    client
        .join_with(serde_json::json!({"type":"join","room":"attacks","name":"forever","mode":"mesh","token":forever}))
        .await;
    client.leave().await;
    let not_yet = sign(serde_json::json!({
        "room":"attacks","sub":"early","exp":u64::MAX,"nbf":unix_now() + 3600 + LEEWAY_SECS
    }));
    let mut early = WsClient::connect(server).await;
    early
        .send(&serde_json::json!({"type":"join","room":"attacks","name":"early","mode":"mesh","token":not_yet}).to_string())
        .await;
    let said = early.expect_error(ErrorCode::Unauthorized).await;
    assert!(said.contains("not valid yet"), "{said}");
    drop(early);
    wait_until_idle(server, TIMEOUT).await.expect("all gone");
}

/// One raw HTTP/1.1 request with the given Host and extra header lines
/// (and body); the status code of the answer.
async fn status_of(
    server: &gridmix::server::Server,
    request_line: &str,
    host: &str,
    extra: &str,
) -> u16 {
    let mut stream = connect(server).await;
    // An upgrade says its own Connection header.
    let close = if extra.contains("Connection:") {
        ""
    } else {
        "Connection: close\r\n"
    };
    let request = format!("{request_line}\r\nHost: {host}\r\n{close}{extra}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let read_head = async {
        while !head.ends_with(b"\r\n\r\n") && stream.read_exact(&mut byte).await.is_ok() {
            head.push(byte[0]);
        }
    };
    tokio::time::timeout(TIMEOUT, read_head)
        .await
        .unwrap_or_else(|_| panic!("{request_line} for {host}: no answer"));
    let head = String::from_utf8_lossy(&head).into_owned();
    head.get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{request_line} for {host}: no status in {head:?}"))
}

/// DNS rebinding: a page at evil.test whose name now resolves to this
/// server sends Host and Origin both evil.test. With --public-host, that is
/// refused, the page, the WebSocket and the API alike.
async fn dns_rebinding() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let public = format!("127.0.0.1:{port}");
    let server = start_server_at(
        ServeArgs {
            public_hosts: vec![public.clone()],
            ..ServeArgs::default()
        },
        public.parse().unwrap(),
    )
    .await;
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://evil.test\r\n";
    assert_eq!(
        status_of(&server, "GET /ws HTTP/1.1", "evil.test", upgrade).await,
        421
    );
    assert_eq!(
        status_of(&server, "GET / HTTP/1.1", "evil.test", "").await,
        421
    );
    assert_eq!(
        status_of(&server, "GET /api/rooms HTTP/1.1", "evil.test", "").await,
        421
    );
    assert_eq!(status_of(&server, "GET / HTTP/1.1", &public, "").await, 200);
    let own = upgrade.replace("http://evil.test", &format!("http://{public}"));
    assert_eq!(
        status_of(&server, "GET /ws HTTP/1.1", &public, &own).await,
        101
    );
    server.shut_down().await;
}

/// A page of another site posts to /api on a server without auth (a form
/// or a text/plain fetch needs no CORS preflight): refused whether the
/// browser says so by Origin or by Sec-Fetch-Site; curl still gets in.
async fn cross_site_api_requests() {
    let server = start_server(ServeArgs::default()).await;
    let host = server.local_addr().to_string();
    let post = "POST /api/rooms/attacked/recordings HTTP/1.1";
    let body = "Content-Type: text/plain\r\nContent-Length: 17\r\n\r\n{\"format\":\"webm\"}";
    for browser in [
        "Origin: https://evil.test\r\n",
        "Sec-Fetch-Site: cross-site\r\n",
    ] {
        let status = status_of(&server, post, &host, &format!("{browser}{body}")).await;
        assert_eq!(status, 403, "{browser}");
    }
    // Not refused for being cross-site: there is no such room.
    assert_eq!(status_of(&server, post, &host, body).await, 404);
    server.shut_down().await;
}

/// A join from a new connection that would open `room`: refused with
/// `too-many-rooms` and a sentence saying `words`. Returns the connection.
async fn refused_room(
    server: &gridmix::server::Server,
    room: &str,
    name: &str,
    words: &str,
) -> WsClient {
    let mut client = WsClient::connect(server).await;
    refused_room_on(&mut client, room, name, words).await;
    client
}

/// `client` asks to open `room` and is refused with `too-many-rooms` and a
/// sentence saying `words`.
async fn refused_room_on(client: &mut WsClient, room: &str, name: &str, words: &str) {
    client
        .send(&serde_json::json!({"type":"join","room":room,"name":name,"mode":"mesh"}).to_string())
        .await;
    let said = client.expect_error(ErrorCode::TooManyRooms).await;
    assert!(said.contains(words), "{said}");
}

/// Waits until exactly `count` rooms are open.
async fn wait_for_open_rooms(server: &gridmix::server::Server, count: usize) {
    eventually(TIMEOUT, || async {
        let open = open_rooms(server).await?.len();
        anyhow::ensure!(open == count, "{open} rooms open");
        Ok(())
    })
    .await
    .unwrap();
}

/// One address opening room after room: once it has its share open, a
/// new room is `too-many-rooms` for it, while joining an open room (its own
/// or anyone's) still works.
async fn one_address_opening_every_room() {
    let server = start_server(ServeArgs {
        max_rooms_per_ip: 3,
        ..ServeArgs::default()
    })
    .await;
    let mut openers = Vec::new();
    for room in ["mine-1", "mine-2", "mine-3"] {
        let mut client = WsClient::connect(&server).await;
        client.join(room, "opener", "mesh").await;
        openers.push(client);
    }
    let mut greedy = refused_room(&server, "mine-4", "opener", "Your address").await;
    let mut guest = WsClient::connect(&server).await;
    guest.join("mine-2", "guest", "mesh").await;
    guest.leave().await;
    // Once one of its rooms closes, it may open another.
    openers.remove(0).leave().await;
    wait_for_open_rooms(&server, 2).await;
    greedy.join("mine-4", "opener", "mesh").await;
    greedy.leave().await;
    for client in openers {
        client.leave().await;
    }
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

/// One address opening and closing rooms one after another (each MCU room
/// builds a compositor and an encoder): past its share a minute, a new
/// room is `too-many-rooms` for it, though it has none open beyond the one
/// it keeps; joining an open room still works.
async fn one_address_opening_rooms_quickly() {
    let server = start_server(ServeArgs {
        room_creations_per_ip: 3,
        ..ServeArgs::default()
    })
    .await;
    let mut keeper = WsClient::connect(&server).await;
    keeper.join("kept", "keeper", "mesh").await;
    for room in ["churn-1", "churn-2"] {
        let mut client = WsClient::connect(&server).await;
        client.join(room, "churner", "mesh").await;
        client.leave().await;
    }
    wait_for_open_rooms(&server, 1).await;
    refused_room(&server, "churn-3", "churner", "in the last 60 s").await;
    let mut guest = WsClient::connect(&server).await;
    guest.join("kept", "guest", "mesh").await;
    guest.leave().await;
    keeper.leave().await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

/// Behind a trusted reverse proxy, each client's X-Forwarded-For address
/// gets its own share of rooms, and the proxy's connections are not capped
/// as one address's; from anyone else, X-Forwarded-For is ignored (a client
/// cannot pick a fresh address for each room).
async fn forwarded_addresses() {
    for trusted in [true, false] {
        let server = start_server(ServeArgs {
            max_rooms_per_ip: 1,
            max_connections_per_ip: 2,
            trusted_proxies: if trusted {
                vec![LOOPBACK.parse().unwrap()]
            } else {
                vec![]
            },
            ..ServeArgs::default()
        })
        .await;
        let mut first = WsClient::connect_forwarded_for(&server, "198.51.100.1").await;
        first.join("xff-1", "first", "mesh").await;
        // What a client writes left of the proxy's entry proves nothing.
        let mut other =
            WsClient::connect_forwarded_for(&server, "198.51.100.1, 198.51.100.2").await;
        if trusted {
            other.join("xff-2", "other", "mesh").await;
            // A third connection from the proxy, over the per-address cap
            // of 2: the proxy is not one client.
            let mut again = WsClient::connect_forwarded_for(&server, "198.51.100.1").await;
            refused_room_on(&mut again, "xff-3", "again", "Your address").await;
            other.leave().await;
        } else {
            refused_room_on(&mut other, "xff-2", "other", "Your address").await;
        }
        first.leave().await;
        wait_until_idle(&server, TIMEOUT).await.expect("all gone");
        server.shut_down().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attacks_are_bounded_and_leave_nothing_behind() {
    let server = start_server(ServeArgs {
        auth_secret: Some(SECRET.to_owned()),
        header_timeout: HEADER_TIMEOUT,
        body_timeout: BODY_TIMEOUT,
        // Long, so only the frame limit can end the huge frame's socket.
        join_timeout: Duration::from_secs(120),
        ..ServeArgs::default()
    })
    .await;
    let token = |identity: &str| {
        issue_token(
            SECRET,
            "attacks",
            identity,
            Duration::from_secs(3600),
            true,
            unix_now(),
        )
        .unwrap()
    };
    // A first join and leave, so what one join starts once is in the baseline.
    let mut warm = WsClient::connect(&server).await;
    warm.join_with(serde_json::json!({"type":"join","room":"attacks","name":"warm","mode":"mesh","token":token("warm")}))
        .await;
    warm.leave().await;
    wait_until_idle(&server, TIMEOUT).await.expect("idle");
    let (threads_before, fds_before) = settled_counts().await;

    half_headers(&server).await;
    slow_bodies(&server).await;
    idle_keep_alives(&server).await;
    partial_huge_frames(&server).await;
    too_many_connections(8).await;
    huge_poll_numbers(&server, &token("poller")).await;
    edge_tokens(&server).await;
    dns_rebinding().await;
    cross_site_api_requests().await;
    one_address_opening_every_room().await;
    one_address_opening_rooms_quickly().await;
    forwarded_addresses().await;

    let (threads_after, fds_after) = settled_counts().await;
    eprintln!(
        "threads {threads_before} -> {threads_after}, descriptors {fds_before} -> {fds_after}"
    );
    assert!(
        threads_after <= threads_before + SLACK && fds_after <= fds_before + SLACK,
        "{threads_after} threads and {fds_after} descriptors, {threads_before} and {fds_before} before"
    );
    // A normal client joins at once.
    let mut normal = WsClient::connect(&server).await;
    normal
        .join_with(serde_json::json!({"type":"join","room":"attacks","name":"normal","mode":"mesh","token":token("normal")}))
        .await;
    normal.leave().await;
    server.shut_down().await;
}
