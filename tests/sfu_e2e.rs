//! SFU rooms over real WebSocket + WebRTC on loopback: each bot receives
//! every other sender's tracks, untouched, on its subscribe connection, with
//! the sender's id as stream id; joins and leaves renegotiate.

mod common;

use common::*;
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

    // Churn: publishers who come, are seen by everyone, and go; and some
    // who leave before anyone could see them.
    for i in 0..3 {
        let churn = join_member(
            &server,
            room,
            &format!("churn{i}"),
            Mode::Sfu,
            (0xff00ff, 1900.0),
            false,
        )
        .await;
        members.push(churn);
        wait_for_full_exchange(&members, TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("with churn{i}: {e:#}"));
        members.pop().expect("just pushed").bot.leave().await;
    }
    for i in 0..7 {
        let churn = join_member(
            &server,
            room,
            &format!("brief{i}"),
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

/// Publishers who come and go leave inactive m-lines behind, which
/// webrtcbin 1.22 cannot reuse: once they pile up, a subscriber is given a
/// fresh subscribe connection with the live tracks only, and goes on seeing
/// and hearing everyone. Without it, the viewer's SDP grows by two m-lines
/// per departed publisher for as long as it stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_gets_a_fresh_subscribe_connection_once_departed_publishers_pile_up() {
    use gridmix::media::subscription::RENEW_AFTER_ENDED;
    let server = start_server(ServeArgs::default()).await;
    let room = "sfu-renew";
    let mut members = vec![
        join_member(&server, room, "steady", Mode::Sfu, SENDERS[0], false).await,
        join_member(&server, room, "viewer", Mode::Sfu, (0, 0.0), true).await,
    ];
    wait_for_full_exchange(&members, TIMEOUT)
        .await
        .expect("a sender and a viewer");
    let churners = RENEW_AFTER_ENDED / 2 + 2;
    for i in 0..churners {
        let churn = join_member(
            &server,
            room,
            &format!("churn{i}"),
            Mode::Sfu,
            SENDERS[1 + i % 3],
            false,
        )
        .await;
        let leaver = churn.id().to_owned();
        members.push(churn);
        wait_for_full_exchange(&members, TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("with churn{i}: {e:#}"));
        members.pop().expect("just pushed").bot.leave().await;
        for m in &members {
            m.bot
                .wait_for_state(TIMEOUT, |s| {
                    !s.tracks.iter().any(|t| t.stream == leaver && t.active)
                })
                .await
                .unwrap_or_else(|e| panic!("{}: {leaver}'s tracks still live: {e:#}", m.id()));
        }
    }
    members.push(join_member(&server, room, "late", Mode::Sfu, SENDERS[3], false).await);
    wait_for_full_exchange(&members, TIMEOUT)
        .await
        .expect("everyone, on the fresh subscribe connections");

    // Without a fresh connection the viewer's last offer would have had
    // 2 m-lines for each of the steady and the late sender and 2 for each
    // churner; with one, at most the live ones and RENEW_AFTER_ENDED more.
    let viewer = members[1].bot.state();
    assert!(
        viewer.subscribe_connections >= 2,
        "the viewer's subscribe connection was never replaced: {} m-lines in its last offer",
        viewer.tracks.len()
    );
    assert!(
        viewer.tracks.len() <= 4 + RENEW_AFTER_ENDED,
        "the viewer's last offer has {} m-lines ({} connections): {:?}",
        viewer.tracks.len(),
        viewer.subscribe_connections,
        viewer.tracks
    );
    // The replaced connections are gone from the server: two webrtcbins
    // (publish and subscribe) per participant, no more.
    wait_for_peer_connections(&server, room, 2 * members.len(), TIMEOUT)
        .await
        .expect("no replaced subscribe connection left");
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
    let members = join_renumbered_sfu_room(&server, "sfu-payload-types", |_| {}).await;
    wait_for_full_exchange(&members, TIMEOUT)
        .await
        .expect("every track, whatever the numbers");
    assert_no_errors(&members);
    for m in members {
        m.bot.leave().await;
    }
    server.shut_down().await;
}

/// Someone joining a room that already has publishers gets them all in one
/// first subscribe offer: several video m-lines (and several audio ones)
/// with the same payload type on one bundled transport, which a receiver
/// can only tell apart by SSRC or by the MID header extension. The late
/// joiner must decode every one; and on every subscribe m-line of everyone,
/// the packets must carry the SSRC that m-line's a=ssrc announces and its
/// own mid in the MID header extension (which the bot, like browsers,
/// accepts in its answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_joiners_decode_every_track_of_their_first_offer_routed_by_ssrc_and_mid() {
    let server = start_server(ServeArgs::default()).await;
    for publishers in [2, 4] {
        let room = format!("sfu-late-{publishers}");
        let mut members = Vec::new();
        for (i, sender) in SENDERS.iter().take(publishers).enumerate() {
            members.push(
                join_member(
                    &server,
                    &room,
                    &format!("bot{i}"),
                    Mode::Sfu,
                    *sender,
                    false,
                )
                .await,
            );
        }
        wait_for_full_exchange(&members, TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{publishers} publishers: {e:#}"));
        members
            .push(join_member(&server, &room, "late", Mode::Sfu, (0x00ffff, 1900.0), false).await);
        wait_for_full_exchange(&members, TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("a late joiner after {publishers} publishers: {e:#}"));
        let late = members.last().expect("just joined");
        assert_eq!(
            late.bot.state().subscribe_offers,
            1,
            "the late joiner should have had every track in its first offer"
        );
        for member in &members {
            assert_routed_by_ssrc_and_mid(member);
        }
        assert_no_errors(&members);
        for m in members {
            m.bot.leave().await;
        }
    }
    server.shut_down().await;
}

/// Every live subscribe m-line of `member`: its packets carried the SSRC its
/// a=ssrc announced, and its own mid in the MID header extension.
fn assert_routed_by_ssrc_and_mid(member: &Member) {
    let state = member.bot.state();
    let traffic = member.bot.traffic();
    for track in state.tracks.iter().filter(|t| t.active) {
        let key = (track.stream.clone(), track.kind == MediaKind::Video);
        let received = traffic.received.get(&key).unwrap_or_else(|| {
            panic!("{}: nothing arrived for {track:?}", member.id());
        });
        assert!(
            !track.ssrcs.is_empty(),
            "{}: {track:?} announces no SSRC",
            member.id()
        );
        assert_eq!(
            received.ssrcs,
            track.ssrcs,
            "{}: the packets of {track:?} came with other SSRCs",
            member.id()
        );
        let mid = track.mid.clone().expect("a subscribe m-line has a mid");
        assert_eq!(
            received.header_mids,
            [mid],
            "{}: the MID header extension of {track:?}",
            member.id()
        );
    }
}

/// A subscriber whose answer refuses one forwarded video m-line (port 0):
/// that one forward is dropped, and nothing else changes. Its publisher
/// stays in the room and every other subscriber keeps seeing it; the
/// refusing subscriber gets every other track and later renegotiations.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forward_one_subscriber_refuses_leaves_the_publisher_and_everyone_else_alone() {
    let server = start_server(ServeArgs::default()).await;
    let room = "sfu-refused-forward";
    let mut members = Vec::new();
    for (i, sender) in SENDERS.iter().take(3).enumerate() {
        members
            .push(join_member(&server, room, &format!("bot{i}"), Mode::Sfu, *sender, false).await);
    }
    wait_for_full_exchange(&members, TIMEOUT)
        .await
        .expect("three senders");
    let refuser = join_member_with(&server, room, "refuser", Mode::Sfu, (0, 0.0), true, |c| {
        c.refuse_last_subscribe_video = true;
    })
    .await;
    let refused_video = refuser
        .bot
        .wait_for_state(TIMEOUT, |s| s.subscribe_offers > 0)
        .await
        .expect("the refuser's first offer")
        .tracks
        .iter()
        .rfind(|t| t.kind == MediaKind::Video)
        .map(|t| t.stream.clone())
        .expect("a video m-line");
    let refused = members
        .iter()
        .position(|m| m.id() == refused_video)
        .expect("the refused video is a sender's");
    // The others' pictures arrive before anything renegotiates.
    for (i, sender) in members.iter().enumerate() {
        if i != refused {
            wait_for_colour_from(&refuser.bot, sender.id(), sender.colour, TIMEOUT)
                .await
                .unwrap_or_else(|e| panic!("the refuser sees {} before: {e:#}", sender.id()));
        }
    }

    // A fourth sender renegotiates everyone, the refuser included.
    members.push(join_member(&server, room, "bot3", Mode::Sfu, SENDERS[3], false).await);
    wait_for_full_exchange(&members, TIMEOUT)
        .await
        .expect("the senders, the refused one included, after the refusal");
    let all_tones: Vec<f64> = SENDERS.iter().map(|s| s.1).collect();
    for (i, sender) in members.iter().enumerate() {
        if i != refused {
            wait_for_colour_from(&refuser.bot, sender.id(), sender.colour, TIMEOUT)
                .await
                .unwrap_or_else(|e| panic!("the refuser sees {}: {e:#}", sender.id()));
        }
        wait_for_voice_from(&refuser.bot, sender, &all_tones, TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("the refuser hears {}: {e:#}", sender.id()));
    }
    let traffic = refuser.bot.traffic();
    assert_eq!(
        traffic
            .received
            .get(&(refused_video.clone(), true))
            .map_or(0, |t| t.packets),
        0,
        "video arrived on the m-line the refuser refused"
    );
    assert_no_errors(&members);
    assert_no_errors(std::slice::from_ref(&refuser));
    refuser.bot.leave().await;
    for m in members {
        m.bot.leave().await;
    }
    server.shut_down().await;
}

/// Who speaks in an SFU room, read from the levels in the publishers'
/// audio packets (RFC 6464): nothing is decoded on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn everyone_in_an_sfu_room_hears_who_speaks_from_the_levels_in_the_packets() {
    let server = start_server(ServeArgs::default()).await;
    let room = "sfu-speakers";
    // The first speaks up; the second's tone is below speech level, the
    // third sends silence.
    let mut members = Vec::new();
    for (i, volume) in [0.3, 0.003, 0.0].into_iter().enumerate() {
        members.push(
            join_member_with(
                &server,
                room,
                &format!("bot{i}"),
                Mode::Sfu,
                SENDERS[i],
                false,
                |config| config.tone_volume = volume,
            )
            .await,
        );
    }
    let loud = members[0].bot.id().to_owned();
    for member in &members {
        let state = member
            .bot
            .wait_for_state(TIMEOUT, |s| !s.speakers.active.is_empty())
            .await
            .expect("someone is heard speaking");
        assert_eq!(state.speakers.active, std::slice::from_ref(&loud));
        assert_eq!(state.speakers.dominant.as_deref(), Some(loud.as_str()));
    }
    // It falls silent: after the window, nobody speaks.
    members[0].bot.set_tone_volume(0.0);
    for member in &members {
        member
            .bot
            .wait_for_state(TIMEOUT, |s| s.speakers.active.is_empty())
            .await
            .expect("nobody speaks once it is silent");
    }
    for member in members {
        member.bot.leave().await;
    }
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}
