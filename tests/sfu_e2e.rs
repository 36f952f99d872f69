//! SFU rooms over real WebSocket + WebRTC on loopback: each bot receives
//! every other sender's tracks, untouched, on its subscribe connection, with
//! the sender's id as stream id; joins and leaves renegotiate.

mod common;

use common::*;
use gridmix::bot::PayloadTypes;
use gridmix::config::ServeArgs;
use gridmix::media::sdp::MediaKind;
use gridmix::protocol::Mode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sfu_forwards_every_track_renegotiates_on_join_and_leave_and_survives_churn() {
    let server = start_server(ServeArgs::default()).await;
    let room = "sfu-e2e";
    let mut members = Vec::new();
    for (i, sender) in SENDERS.iter().take(3).enumerate() {
        members
            .push(join_member(&server, room, &format!("bot{i}"), Mode::Sfu, *sender, false).await);
    }
    members.push(join_member(&server, room, "viewer", Mode::Sfu, (0, 0.0), true).await);
    wait_for_full_exchange(&members, TIMEOUT)
        .await
        .expect("three senders and a viewer");

    // A fourth sender: everyone gets its tracks by renegotiation.
    let offers_before: Vec<u32> = members
        .iter()
        .map(|m| m.bot.state().subscribe_offers)
        .collect();
    members.push(join_member(&server, room, "bot3", Mode::Sfu, SENDERS[3], false).await);
    wait_for_full_exchange(&members, TIMEOUT)
        .await
        .expect("after a fourth sender joined");
    for (m, before) in members.iter().zip(offers_before) {
        assert!(
            m.bot.state().subscribe_offers > before,
            "{} got bot3's tracks without a new offer",
            m.id()
        );
    }

    // One leaves: its tracks end everywhere else, by a new offer in which
    // the two m-lines that carried them (its msid) are still there, inactive.
    let leaver = members.remove(1);
    let leaver_id = leaver.id().to_owned();
    let before: Vec<(u32, Vec<u32>)> = members
        .iter()
        .map(|m| {
            let state = m.bot.state();
            let lines: Vec<u32> = state
                .tracks
                .iter()
                .filter(|t| t.stream == leaver_id && t.active)
                .map(|t| t.mline)
                .collect();
            assert_eq!(lines.len(), 2, "{}: {:?}", m.id(), state.tracks);
            (state.subscribe_offers, lines)
        })
        .collect();
    leaver.bot.leave().await;
    wait_for_full_exchange(&members, TIMEOUT)
        .await
        .expect("after bot1 left");
    for (m, (offers, lines)) in members.iter().zip(before) {
        let state = m
            .bot
            .wait_for_state(TIMEOUT, |s| s.subscribe_offers > offers)
            .await
            .unwrap_or_else(|e| panic!("{}: no offer after the leave: {e:#}", m.id()));
        for line in lines {
            let track = state.tracks.iter().find(|t| t.mline == line);
            assert!(
                track.is_some_and(|t| !t.active),
                "{}: m-line {line}, the leaver's, is {track:?} in the last offer: {:?}",
                m.id(),
                state.tracks
            );
        }
    }

    // Ten joins and leaves in a row.
    for i in 0..10 {
        let churn = join_member(
            &server,
            room,
            &format!("churn{i}"),
            Mode::Sfu,
            (0xff00ff, 1900.0),
            false,
        )
        .await;
        churn.bot.leave().await;
    }
    wait_for_full_exchange(&members, TIMEOUT)
        .await
        .expect("after ten joins and leaves");
    for m in &members {
        let state = m.bot.state();
        assert_eq!(
            state.live_streams(MediaKind::Video).len(),
            senders_except(&members, m).len()
        );
    }
    assert_no_errors(&members);

    for m in members {
        m.bot.leave().await;
    }
    server.shut_down().await;
}

/// Publishers that never make a keyframe unasked: a subscriber can only
/// start decoding them if its keyframe requests (and the server's, for a new
/// subscriber) reach them. The late viewer also answers with its own payload
/// type numbers, which the forwarded packets must be rewritten to.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyframe_requests_reach_publishers_and_payload_types_follow_each_answer() {
    let server = start_server(ServeArgs::default()).await;
    let room = "sfu-keyframes";
    let no_periodic_keyframes =
        |c: &mut gridmix::bot::BotConfig| c.keyframe_interval_frames = 1_000_000;
    let mut members = Vec::new();
    for (i, sender) in SENDERS.iter().take(2).enumerate() {
        members.push(
            join_member_with(
                &server,
                room,
                &format!("bot{i}"),
                Mode::Sfu,
                *sender,
                false,
                no_periodic_keyframes,
            )
            .await,
        );
    }
    wait_for_full_exchange(&members, TIMEOUT)
        .await
        .expect("publishers that only make keyframes on request");
    members.push(
        join_member_with(
            &server,
            room,
            "renumbering-viewer",
            Mode::Sfu,
            (0, 0.0),
            true,
            |c| {
                c.subscribe_payload_renumbering = vec![(96, 100), (111, 109)];
            },
        )
        .await,
    );
    wait_for_full_exchange(&members, TIMEOUT)
        .await
        .expect("a late viewer with its own payload types");
    assert_no_errors(&members);
    for m in members {
        m.bot.leave().await;
    }
    server.shut_down().await;
}

/// Publishers and subscribers that number their codecs each their own way
/// (Chrome's 111/96, another stack's 96/97, Firefox's 109/120, a viewer's
/// 100/101): every forward is rewritten from its publisher's numbers to its
/// subscriber's, and everyone decodes every other participant's colour and
/// hears their tone. Once, a publisher whose Opus was 96 was removed for
/// everyone as soon as its first subscriber's m-line refused the caps.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishers_and_subscribers_with_their_own_payload_types_all_hear_and_see_each_other() {
    let server = start_server(ServeArgs::default()).await;
    let room = "sfu-payload-types";
    let numbering = [
        PayloadTypes { opus: 111, vp8: 96 },
        PayloadTypes { opus: 96, vp8: 97 },
        PayloadTypes {
            opus: 109,
            vp8: 120,
        },
    ];
    let mut members = Vec::new();
    for (i, (sender, types)) in SENDERS.iter().zip(numbering).enumerate() {
        members.push(
            join_member_with(
                &server,
                room,
                &format!("bot{i}"),
                Mode::Sfu,
                *sender,
                false,
                |c| {
                    c.payload_types = types;
                },
            )
            .await,
        );
    }
    members.push(
        join_member_with(&server, room, "viewer", Mode::Sfu, (0, 0.0), true, |c| {
            c.payload_types = PayloadTypes {
                opus: 100,
                vp8: 101,
            };
        })
        .await,
    );
    wait_for_full_exchange(&members, TIMEOUT)
        .await
        .expect("every track, whatever the numbers");
    assert_no_errors(&members);
    for m in members {
        m.bot.leave().await;
    }
    server.shut_down().await;
}
