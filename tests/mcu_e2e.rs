//! Three bots in one MCU room over real WebSocket + WebRTC on loopback: each
//! sees everyone's colour in their tile and hears everyone's tone but its own.

mod common;

use common::recording_api::Api;
use common::*;
use gridmix::bot::Bot;
use gridmix::config::ServeArgs;
use gridmix::media::layout::GridLayout;
use gridmix::protocol::Quality;
use std::sync::atomic::Ordering;
use std::time::Duration;

const COLOURS: [u32; 3] = [0xff0000, 0x00ff00, 0x0000ff];
const TONES: [f64; 3] = [400.0, 700.0, 1100.0];
const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_bots_see_their_tiles_hear_the_others_and_the_grid_shrinks_when_one_leaves() {
    let server = start_server(ServeArgs::default()).await;
    let mut bots = Vec::new();
    // Joined one after another so the tile order (join order) is known.
    for i in 0..3 {
        let config = bot_config(&server, "e2e", &format!("bot{i}"), COLOURS[i], TONES[i]);
        bots.push(Bot::join(config).await.expect("bot joins"));
    }

    for (i, bot) in bots.iter().enumerate() {
        wait_for_tiles(bot, &COLOURS, TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("bot{i} composite: {e:#}"));
    }
    for (i, bot) in bots.iter().enumerate() {
        let others: Vec<f64> = (0..3).filter(|&j| j != i).map(|j| TONES[j]).collect();
        wait_for_tones(bot, &others, &[TONES[i]], TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("bot{i} mix: {e:#}"));
    }

    let leaver = bots.remove(1);
    let leaver_id = leaver.id().to_owned();
    leaver.leave().await;
    for (i, bot) in bots.iter().enumerate() {
        bot.wait_for_state(TIMEOUT, |s| s.others.iter().all(|p| p.id != leaver_id))
            .await
            .unwrap_or_else(|e| panic!("bot{i} was not told: {e:#}"));
        wait_for_tiles(bot, &[COLOURS[0], COLOURS[2]], TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("bot{i} two-tile composite: {e:#}"));
    }
    wait_for_tones(&bots[0], &[TONES[2]], &[TONES[0], TONES[1]], TIMEOUT)
        .await
        .expect("after the leave, bot0 hears only bot2");

    for bot in bots {
        assert!(
            bot.state().errors.is_empty(),
            "errors: {:?}",
            bot.state().errors
        );
        bot.leave().await;
    }
    let registry = server.registry().clone();
    eventually(TIMEOUT, || async {
        match registry.running_rooms() {
            0 => Ok(()),
            n => Err(anyhow::anyhow!("{n} rooms still running")),
        }
    })
    .await
    .expect("the empty room is torn down");
    server.shut_down().await;
}

/// A client that only sends (its offer is sendonly): the others see its
/// tile and hear it; it is sent nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sendonly_client_is_seen_and_heard_and_sent_nothing() {
    let server = start_server(ServeArgs::default()).await;
    let watcher = Bot::join(bot_config(
        &server, "sendonly", "watcher", COLOURS[0], TONES[0],
    ))
    .await
    .unwrap();
    let mut config = bot_config(&server, "sendonly", "sender", COLOURS[1], TONES[1]);
    config.receive = false;
    let sender = Bot::join(config).await.unwrap();
    wait_for_tiles(&watcher, &[COLOURS[0], COLOURS[1]], TIMEOUT)
        .await
        .expect("the sendonly client's tile");
    wait_for_tones(&watcher, &[TONES[1]], &[TONES[0]], TIMEOUT)
        .await
        .expect("the sendonly client's voice");
    sender
        .wait_for_state(TIMEOUT, |s| s.answers == 1)
        .await
        .expect("its offer answered");
    assert_eq!(
        sender.frames_received(),
        0,
        "a sendonly client is sent no video"
    );
    assert!(sender.received_streams().is_empty(), "nor any stream");
    for bot in [&watcher, &sender] {
        assert!(bot.state().errors.is_empty(), "{:?}", bot.state().errors);
    }
    sender.leave().await;
    watcher.leave().await;
    server.shut_down().await;
}

/// A second offer on the publish connection (as a renegotiation or an ICE
/// restart sends) is answered on the media that is there: the client's tile
/// never leaves its colour in anyone's composite, and it keeps receiving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_offer_is_answered_without_rebuilding_the_media() {
    let server = start_server(ServeArgs::default()).await;
    let offerer = Bot::join(bot_config(
        &server, "reoffer", "offerer", COLOURS[0], TONES[0],
    ))
    .await
    .unwrap();
    let watch = TileWatch::default();
    let tile = GridLayout::for_count(2, 1280, 720).tiles[0].centre();
    let mut config = bot_config(&server, "reoffer", "watcher", COLOURS[1], TONES[1]);
    config.on_frame = Some(watch.observer(tile, COLOURS[0]));
    let watcher = Bot::join(config).await.unwrap();
    for bot in [&offerer, &watcher] {
        wait_for_tiles(bot, &[COLOURS[0], COLOURS[1]], TIMEOUT)
            .await
            .expect("call up");
    }
    offerer
        .wait_for_state(TIMEOUT, |s| s.answers == 1)
        .await
        .unwrap();

    watch.armed.store(true, Ordering::SeqCst);
    let frames = offerer.frames_received();
    offerer.offer_again();
    offerer
        .wait_for_state(TIMEOUT, |s| s.answers == 2)
        .await
        .expect("the second offer answered");
    // Three seconds of the 30 fps composite after the answer, counted in
    // frames the watcher decoded.
    let seen = watch.seen.load(Ordering::SeqCst);
    eventually(TIMEOUT, || async {
        let now = watch.seen.load(Ordering::SeqCst);
        anyhow::ensure!(now >= seen + 90, "{} frames since the answer", now - seen);
        Ok(())
    })
    .await
    .unwrap();
    watch.armed.store(false, Ordering::SeqCst);
    assert_eq!(
        watch.wrong.load(Ordering::SeqCst),
        0,
        "the offerer's tile left its colour in {} of {} frames",
        watch.wrong.load(Ordering::SeqCst),
        watch.seen.load(Ordering::SeqCst)
    );
    eventually(TIMEOUT, || async {
        let got = offerer.frames_received() - frames;
        anyhow::ensure!(got >= 90, "{got} frames since its second offer");
        Ok(())
    })
    .await
    .expect("the offerer keeps receiving the composite");
    wait_for_tones(&offerer, &[TONES[1]], &[TONES[0]], TIMEOUT)
        .await
        .expect("and its mix");
    for bot in [&offerer, &watcher] {
        assert!(bot.state().errors.is_empty(), "{:?}", bot.state().errors);
    }
    offerer.leave().await;
    watcher.leave().await;
    server.shut_down().await;
}

/// A receiver that asks for a keyframe fifty times a second gets the shared
/// encoder's keyframes at the limiter's pace (one per 500 ms), not one per
/// request; and its requests do reach the encoder.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keyframe_request_flood_is_rate_limited_before_the_shared_encoder() {
    let server = start_server(ServeArgs::default()).await;
    let sender = Bot::join(bot_config(
        &server,
        "pli-flood",
        "sender",
        COLOURS[0],
        TONES[0],
    ))
    .await
    .unwrap();
    let mut config = bot_config(&server, "pli-flood", "flooder", COLOURS[1], TONES[1]);
    config.keyframe_requests_every = Some(Duration::from_millis(20));
    let flooder = Bot::join(config).await.unwrap();
    wait_for_tiles(&flooder, &[COLOURS[0], COLOURS[1]], TIMEOUT)
        .await
        .expect("call up");
    // Ten seconds of the 30 fps composite, counted in decoded frames.
    const FRAMES: u64 = 300;
    let started = std::time::Instant::now();
    let (frames, keyframes) = (flooder.frames_received(), flooder.keyframes_received());
    eventually(Duration::from_secs(60), || async {
        let now = flooder.frames_received();
        anyhow::ensure!(now >= frames + FRAMES, "{} frames so far", now - frames);
        Ok(())
    })
    .await
    .unwrap();
    let got = flooder.keyframes_received() - keyframes;
    // The limiter is a rate in time: at most one forced keyframe per
    // 500 ms of the window, one periodic keyframe per 5 s
    // (video-encode.gst), one at each edge. A loaded machine decodes fewer
    // than 30 frames a second, so the window is timed, not counted.
    // Without the limiter nearly every frame would be a keyframe.
    let seconds = started.elapsed().as_secs_f64();
    let most = (seconds * 2.0 + seconds / 5.0).ceil() as u64 + 2;
    eprintln!(
        "{got} keyframes in {FRAMES} frames ({seconds:.1} s) under a flood of keyframe requests"
    );
    assert!(
        (5..=most).contains(&got),
        "{got} keyframes in {FRAMES} frames over {seconds:.1} s (at most {most}, and more than the periodic ones)"
    );
    for bot in [&sender, &flooder] {
        assert!(bot.state().errors.is_empty(), "{:?}", bot.state().errors);
    }
    flooder.leave().await;
    sender.leave().await;
    server.shut_down().await;
}

/// The composite's encoders running in `room`, as `/api/rooms` says.
async fn encoders_in(server: &gridmix::server::Server, room: &str) -> Option<usize> {
    let rooms = open_rooms(server).await.expect("rooms described");
    rooms.iter().find(|r| r.id == room).map(|r| r.encoders)
}

/// Waits until `room` runs `count` video encoders, as `/api/rooms` says.
async fn wait_for_encoders(
    server: &gridmix::server::Server,
    room: &str,
    count: usize,
) -> anyhow::Result<()> {
    eventually(TIMEOUT, || async {
        let encoders = encoders_in(server, room).await;
        anyhow::ensure!(encoders == Some(count), "encoders {encoders:?}");
        Ok(())
    })
    .await
}

/// Waits until `room` decodes `count` participants' videos, as
/// `/api/rooms` says (read from the pipeline's gates).
async fn wait_for_decoded(
    server: &gridmix::server::Server,
    room: &str,
    count: usize,
) -> anyhow::Result<()> {
    eventually(TIMEOUT, || async {
        let rooms = open_rooms(server).await?;
        let decoded = rooms
            .iter()
            .find(|r| r.id == room)
            .map(|r| r.videos_decoded);
        anyhow::ensure!(decoded == Some(count), "videos decoded: {decoded:?}");
        Ok(())
    })
    .await
}

/// An MCU room encodes its composite only while someone can receive it:
/// joins that never connect media cost no encoder (ten such rooms used to
/// keep two cores busy); the first connected participant starts it, on a
/// picture it decodes, and it stops again when the last one has left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_composite_is_encoded_only_while_someone_receives_it() {
    let server = start_server(ServeArgs::default()).await;
    let room = "mcu-lazy";
    let mut idle = WsClient::connect(&server).await;
    idle.join(room, "signaling only", "mcu").await;
    assert_eq!(encoders_in(&server, room).await, Some(0), "a join alone");

    let bot = within(
        "the bot joins",
        TIMEOUT,
        Bot::join(bot_config(&server, room, "red", COLOURS[0], TONES[0])),
    )
    .await
    .unwrap();
    wait_for_tiles(&bot, &[PLACEHOLDER, COLOURS[0]], TIMEOUT)
        .await
        .expect("the bot sees the grid: the silent joiner's placeholder and itself");
    assert_eq!(
        encoders_in(&server, room).await,
        Some(1),
        "while the bot receives"
    );
    within("the bot leaves", TIMEOUT, bot.leave()).await;
    wait_for_encoders(&server, room, 0)
        .await
        .expect("no encoder once nobody receives");
    within("the silent joiner leaves", TIMEOUT, idle.leave()).await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    within("the server shuts down", TIMEOUT, server.shut_down()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn everyone_hears_that_the_loud_participant_speaks_and_that_it_left() {
    let server = start_server(ServeArgs::default()).await;
    // Red speaks up; green's tone is below speech level (-53.5 dBov, like
    // room noise) and blue sends silence.
    let mut bots = Vec::new();
    for (i, volume) in [0.3, 0.003, 0.0].into_iter().enumerate() {
        let mut config = bot_config(&server, "talk", &format!("bot{i}"), COLOURS[i], TONES[i]);
        config.tone_volume = volume;
        bots.push(Bot::join(config).await.expect("bot joins"));
    }
    let red = bots[0].id().to_owned();
    for bot in &bots {
        let state = bot
            .wait_for_state(TIMEOUT, |s| !s.speakers.active.is_empty())
            .await
            .expect("someone is heard speaking");
        assert_eq!(
            state.speakers.active,
            std::slice::from_ref(&red),
            "only red speaks"
        );
        assert_eq!(state.speakers.dominant.as_deref(), Some(red.as_str()));
    }
    // Red leaves: nobody speaks, and the one who spoke is gone.
    let mut bots = bots.into_iter();
    bots.next().unwrap().leave().await;
    let rest: Vec<Bot> = bots.collect();
    for bot in &rest {
        let state = bot
            .wait_for_state(TIMEOUT, |s| s.speakers.dominant.is_none())
            .await
            .expect("the speaker who left is no longer dominant");
        assert!(state.speakers.active.is_empty(), "{:?}", state.speakers);
    }
    for bot in rest {
        bot.leave().await;
    }
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

/// The colour of the bot whose id is `id`, among `bots` joined with COLOURS.
fn colour_of(bots: &[Bot], id: &str) -> u32 {
    bots.iter()
        .position(|b| b.id() == id)
        .map(|i| COLOURS[i])
        .unwrap_or_else(|| panic!("no bot {id}"))
}

/// Sets a room's layout through the API; returns it as the room announced it.
async fn put_layout(api: &Api, room: &str, body: &str) -> gridmix::protocol::Layout {
    let reply = api
        .put(&format!("/api/rooms/{room}/layout"), body)
        .await
        .expect("PUT layout");
    assert_eq!(reply.status, 200, "{body}: {}", reply.body);
    serde_json::from_value(reply.body).expect("a layout")
}

/// Waits until `bot`'s composite matches `layout` tile by tile.
async fn wait_for_layout(
    bot: &Bot,
    bots: &[Bot],
    layout: &gridmix::protocol::Layout,
    timeout: Duration,
) -> anyhow::Result<()> {
    eventually(timeout, || async {
        let frame = bot.latest_frame(Duration::from_secs(1)).await?;
        check_layout(&frame, layout, |id| colour_of(bots, id))
    })
    .await
}

fn main_tile(layout: &gridmix::protocol::Layout) -> Option<&str> {
    layout
        .tiles
        .iter()
        .find(|t| t.main)
        .map(|t| t.participant.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_speaker_layout_shows_the_loud_participant_large_and_a_pin_holds_the_main_tile() {
    let server = start_server(ServeArgs::default()).await;
    let api = Api::new(server.local_addr());
    let room = "layouts";
    // Red speaks; green is below speech level; blue is silent.
    let mut bots = Vec::new();
    for (i, volume) in [0.3, 0.003, 0.0].into_iter().enumerate() {
        let mut config = bot_config(&server, room, &format!("bot{i}"), COLOURS[i], TONES[i]);
        config.tone_volume = volume;
        bots.push(Bot::join(config).await.expect("bot joins"));
    }
    let (red, green) = (bots[0].id().to_owned(), bots[1].id().to_owned());
    let watcher = &bots[2];
    // The grid, as announced and as seen.
    let grid = watcher
        .wait_for_state(TIMEOUT, |s| {
            s.layout.as_ref().is_some_and(|l| l.tiles.len() == 3)
        })
        .await
        .expect("the grid of three is announced")
        .layout
        .unwrap();
    assert_eq!(grid.layout, gridmix::protocol::LayoutKind::Grid);
    wait_for_layout(watcher, &bots, &grid, TIMEOUT)
        .await
        .expect("the composite is the announced grid");
    watcher
        .wait_for_state(TIMEOUT, |s| {
            s.speakers.dominant.as_deref() == Some(red.as_str())
        })
        .await
        .expect("red is the dominant speaker");

    // Speaker layout: red large, within a second of the switch.
    let speaker = put_layout(&api, room, r#"{"layout":"speaker"}"#).await;
    assert_eq!(main_tile(&speaker), Some(red.as_str()), "{speaker:?}");
    assert_eq!(speaker.tiles.len(), 3);
    wait_for_layout(watcher, &bots, &speaker, Duration::from_secs(1))
        .await
        .expect("red fills the main tile within a second");
    for bot in &bots {
        bot.wait_for_state(TIMEOUT, |s| s.layout.as_ref() == Some(&speaker))
            .await
            .expect("everyone is told the new layout");
    }

    // Green pinned: green keeps the main tile while red goes on speaking.
    let body = format!(r#"{{"layout":"speaker","pin":"{green}"}}"#);
    let pinned = put_layout(&api, room, &body).await;
    assert_eq!(main_tile(&pinned), Some(green.as_str()));
    assert_eq!(pinned.pin.as_deref(), Some(green.as_str()));
    wait_for_layout(watcher, &bots, &pinned, Duration::from_secs(1))
        .await
        .expect("green fills the main tile within a second");
    // Longer than a dominant speaker's hold, frame after frame.
    let watched_until = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < watched_until {
        let frame = watcher
            .latest_frame(Duration::from_secs(2))
            .await
            .expect("a frame");
        check_layout(&frame, &pinned, |id| colour_of(&bots, id)).expect("the pin holds");
        let state = watcher.state();
        assert_eq!(state.speakers.dominant.as_deref(), Some(red.as_str()));
        assert_eq!(state.layout.as_ref(), Some(&pinned));
    }
    let shown = api
        .get(&format!("/api/rooms/{room}/layout"))
        .await
        .expect("GET layout");
    assert_eq!(shown.status, 200);
    assert_eq!(
        serde_json::from_value::<gridmix::protocol::Layout>(shown.body).unwrap(),
        pinned
    );

    // Bad requests get a code and a sentence; the layout stays.
    for (body, status, code) in [
        (r#"{"layout":"mosaic"}"#, 400, "bad-layout"),
        (
            r#"{"layout":"grid","pin":"nobody"}"#,
            404,
            "unknown-participant",
        ),
        ("{", 400, "bad-json"),
    ] {
        let reply = api
            .put(&format!("/api/rooms/{room}/layout"), body)
            .await
            .unwrap();
        assert_eq!((reply.status, reply.code()), (status, code), "{body}");
        assert!(
            reply.body["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let missing = api.get("/api/rooms/no-such-room/layout").await.unwrap();
    assert_eq!((missing.status, missing.code()), (404, "unknown-room"));
    assert_eq!(watcher.state().layout.as_ref(), Some(&pinned));

    for bot in bots {
        assert!(bot.state().errors.is_empty(), "{:?}", bot.state().errors);
        bot.leave().await;
    }
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

/// Whether a colour close to `colour` shows anywhere on a coarse grid of
/// points over the frame.
fn shows_colour(frame: &gridmix::bot::analysis::VideoFrame, colour: u32) -> bool {
    let want = gridmix::bot::analysis::rgb_of(colour);
    (8..frame.height as i32 - 8).step_by(24).any(|y| {
        (8..frame.width as i32 - 8)
            .step_by(24)
            .any(|x| gridmix::bot::analysis::colour_close(frame.mean_rgb(x, y, 4), want, 40))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn beyond_max_visible_video_is_paused_and_speaking_brings_a_tile_back() {
    let server = start_server(ServeArgs {
        max_visible: 2,
        ..ServeArgs::default()
    })
    .await;
    let room = "last-n";
    const FOUR: [u32; 4] = [COLOURS[0], COLOURS[1], COLOURS[2], 0xffff00];
    // Everyone silent: the first two to join are shown.
    let mut bots = Vec::new();
    for (i, colour) in FOUR.into_iter().enumerate() {
        let mut config = bot_config(
            &server,
            room,
            &format!("bot{i}"),
            colour,
            300.0 + 150.0 * i as f64,
        );
        config.tone_volume = 0.0;
        bots.push(Bot::join(config).await.expect("bot joins"));
    }
    let colour_of = |id: &str| FOUR[bots.iter().position(|b| b.id() == id).expect("a bot")];
    for (i, bot) in bots.iter().enumerate() {
        let paused = i >= 2;
        bot.wait_for_state(TIMEOUT, |s| s.video_paused == paused && s.layout.is_some())
            .await
            .unwrap_or_else(|e| panic!("bot{i} paused {paused}: {e:#}"));
    }
    let watcher = &bots[0];
    let layout = watcher.state().layout.unwrap();
    let shown: Vec<&str> = layout
        .tiles
        .iter()
        .map(|t| t.participant.as_str())
        .collect();
    assert_eq!(shown, [bots[0].id(), bots[1].id()]);
    wait_for_decoded(&server, room, 2)
        .await
        .expect("only the two shown are decoded");
    eventually(TIMEOUT, || async {
        let frame = watcher.latest_frame(Duration::from_secs(1)).await?;
        check_layout(&frame, &layout, colour_of)?;
        for hidden in &FOUR[2..] {
            anyhow::ensure!(
                !shows_colour(&frame, *hidden),
                "{hidden:06x} is on the composite"
            );
        }
        Ok(())
    })
    .await
    .expect("the first two tiles, and neither paused colour");

    // The fourth speaks up: it takes the place of the one who joined last
    // of those shown, whose video is paused in turn.
    bots[3].set_tone_volume(0.3);
    let (second, fourth) = (bots[1].id().to_owned(), bots[3].id().to_owned());
    let resumed = watcher
        .wait_for_state(TIMEOUT, |s| {
            s.layout
                .as_ref()
                .is_some_and(|l| l.tiles.iter().any(|t| t.participant == fourth))
        })
        .await
        .expect("the speaker is shown")
        .layout
        .unwrap();
    let shown_at = std::time::Instant::now();
    let shown: Vec<&str> = resumed
        .tiles
        .iter()
        .map(|t| t.participant.as_str())
        .collect();
    assert_eq!(shown, [bots[0].id(), fourth.as_str()]);
    eventually(TIMEOUT, || async {
        let frame = watcher.latest_frame(Duration::from_secs(1)).await?;
        check_layout(&frame, &resumed, colour_of)
    })
    .await
    .expect("the speaker's own picture in its tile");
    let shown_after = shown_at.elapsed();
    bots[3]
        .wait_for_state(TIMEOUT, |s| !s.video_paused)
        .await
        .expect("the speaker is told its video is back");
    bots[1]
        .wait_for_state(TIMEOUT, |s| s.video_paused)
        .await
        .unwrap_or_else(|e| panic!("{second} is paused in turn: {e:#}"));
    wait_for_decoded(&server, room, 2)
        .await
        .expect("still two decoded: the speaker's, not the paused one's");
    eprintln!("the speaker's tile showed its picture {shown_after:?} after the layout said so");

    for bot in bots {
        assert!(bot.state().errors.is_empty(), "{:?}", bot.state().errors);
        bot.leave().await;
    }
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

/// Whose voices `room` mixes and how many Opus encoders its pipeline has,
/// as `/api/rooms` says.
async fn mixing_in(
    server: &gridmix::server::Server,
    room: &str,
) -> anyhow::Result<(Vec<String>, usize)> {
    let rooms = open_rooms(server).await?;
    let room = rooms
        .iter()
        .find(|r| r.id == room)
        .ok_or_else(|| anyhow::anyhow!("no room {room}"))?;
    Ok((room.mixed.clone(), room.audio_encoders))
}

/// Waits until `room` mixes `count` voices, other than `not`, on `encoders`
/// Opus encoders; returns who is mixed.
async fn wait_for_mixed(
    server: &gridmix::server::Server,
    room: &str,
    count: usize,
    not: Option<&str>,
    encoders: usize,
) -> Vec<String> {
    eventually(TIMEOUT, || async {
        let (mixed, running) = mixing_in(server, room).await?;
        anyhow::ensure!(
            mixed.len() == count
                && running == encoders
                && not.is_none_or(|n| !mixed.iter().any(|m| m == n)),
            "mixed {mixed:?} on {running} Opus encoders"
        );
        Ok(mixed)
    })
    .await
    .unwrap_or_else(|e| panic!("{count} mixed on {encoders} encoders: {e:#}"))
}

/// Each bot hears the tones of the mixed bots but its own, and no other.
async fn each_hears_the_mixed_but_itself(bots: &[Bot], tones: &[f64], mixed: &[String]) {
    for (i, bot) in bots.iter().enumerate() {
        let heard = |j: usize| j != i && mixed.iter().any(|m| m == bots[j].id());
        let (present, absent): (Vec<usize>, Vec<usize>) = (0..bots.len()).partition(|&j| heard(j));
        let present: Vec<f64> = present.into_iter().map(|j| tones[j]).collect();
        let absent: Vec<f64> = absent.into_iter().map(|j| tones[j]).collect();
        wait_for_tones(bot, &present, &absent, TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("bot{i} (mixed: {mixed:?}): {e:#}"));
    }
}

/// The loudest of a bot's own tone in 100 ms steps of `audio`.
fn loudest_in_steps(audio: &[f32], hz: f64) -> f64 {
    audio
        .chunks(gridmix::bot::AUDIO_RATE as usize / 10)
        .map(|chunk| gridmix::bot::analysis::tone_amplitude(chunk, gridmix::bot::AUDIO_RATE, hz))
        .fold(0.0, f64::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_six_talking_two_are_mixed_on_three_encoders_and_nobody_hears_themselves() {
    let server = start_server(ServeArgs {
        max_mixed_speakers: 2,
        ..ServeArgs::default()
    })
    .await;
    let room = "top-k";
    let tones: Vec<f64> = (0..6).map(|i| 300.0 + 170.0 * f64::from(i)).collect();
    let mut bots = Vec::new();
    for (i, tone) in tones.iter().enumerate() {
        let colour = 0x202020 * (i as u32 + 1);
        let config = bot_config(&server, room, &format!("bot{i}"), colour, *tone);
        bots.push(Bot::join(config).await.expect("bot joins"));
    }
    // Everyone talks at once: two are mixed, on three encodes (the mix of
    // both for the four others, and one for each of the two).
    let mixed = wait_for_mixed(&server, room, 2, None, 3).await;
    each_hears_the_mixed_but_itself(&bots, &tones, &mixed).await;
    // The bots' packets say how loud they are (RFC 6464), so only the two
    // mixed voices are decoded.
    eventually(TIMEOUT, || async {
        let rooms = open_rooms(&server).await?;
        let decoded = rooms.iter().find(|r| r.id == room).map(|r| r.audio_decoded);
        anyhow::ensure!(decoded == Some(2), "voices decoded: {decoded:?}");
        Ok(())
    })
    .await
    .expect("only the mixed voices are decoded");

    // One of the two falls silent: once it has been quiet long enough, one
    // of the four waiting takes its place. Meanwhile the four listen: the
    // one let in must never hear its own voice, before, during or after.
    let quiet = bots.iter().position(|b| b.id() == mixed[0]).expect("a bot");
    bots[quiet].set_tone_volume(0.0);
    let waiting: Vec<usize> = (0..6)
        .filter(|&i| !mixed.iter().any(|m| m == bots[i].id()))
        .collect();
    let listening = futures::future::join_all(
        waiting
            .iter()
            .map(|&i| bots[i].record_audio(Duration::from_secs(6))),
    );
    let (recorded, remixed) = tokio::join!(
        listening,
        wait_for_mixed(&server, room, 2, Some(bots[quiet].id()), 3)
    );
    let newcomer = remixed
        .iter()
        .find(|m| !mixed.contains(m))
        .expect("someone new is mixed");
    for (&i, audio) in waiting.iter().zip(recorded) {
        let audio = audio.unwrap_or_else(|e| panic!("bot{i} recorded: {e:#}"));
        let own = loudest_in_steps(&audio, tones[i]);
        assert!(
            own < 0.02,
            "bot{i} (newcomer {newcomer}) heard its own tone at {own:.3} while the mix changed"
        );
    }
    each_hears_the_mixed_but_itself(&bots, &tones, &remixed).await;

    for bot in bots {
        assert!(bot.state().errors.is_empty(), "{:?}", bot.state().errors);
        bot.leave().await;
    }
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

/// What `/api/rooms` says `room`'s receivers get: (participant, rung).
async fn receiver_rungs(
    server: &gridmix::server::Server,
    room: &str,
) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let rooms = open_rooms(server).await?;
    let room = rooms
        .iter()
        .find(|r| r.id == room)
        .ok_or_else(|| anyhow::anyhow!("no room {room}"))?;
    Ok(room
        .receivers
        .iter()
        .map(|r| (r.participant.clone(), r.rung.clone()))
        .collect())
}

/// The encode ladder: a receiver that asks for low quality before its
/// offer decodes the 320x180 rung from its very first picture, with every
/// tile in it; the others keep 720p, and the room encodes exactly the
/// rungs someone receives. Asked mid-call, a receiver moves to another rung
/// at once and for good (one change of frame size).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_asking_for_low_quality_gets_the_lowest_rung_from_its_first_frame() {
    let server = start_server(ServeArgs::default()).await;
    let room = "mcu-ladder";
    let red = Bot::join(bot_config(&server, room, "red", COLOURS[0], TONES[0]))
        .await
        .expect("red joins");
    wait_for_tiles(&red, &COLOURS[..1], TIMEOUT)
        .await
        .expect("red sees itself");

    let sizes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = sizes.clone();
    let mut config = bot_config(&server, room, "green", COLOURS[1], TONES[1]);
    config.quality = Some(Quality::Low);
    config.on_frame = Some(gridmix::bot::OnFrame(std::sync::Arc::new(
        move |_stream: &str, frame: &gridmix::bot::analysis::FrameView<'_>| {
            seen.lock().unwrap().push((frame.width, frame.height));
        },
    )));
    let green = Bot::join(config).await.expect("green joins");
    eventually(TIMEOUT, || async {
        let frame = green.latest_frame(Duration::from_secs(2)).await?;
        check_tiles(&frame, (320, 180), &COLOURS[..2])
    })
    .await
    .expect("green sees both tiles at 320x180");
    wait_for_tiles(&red, &COLOURS[..2], TIMEOUT)
        .await
        .expect("red still gets 720p");

    let first_sizes = sizes.lock().unwrap().clone();
    assert!(!first_sizes.is_empty(), "green decoded no frame");
    assert!(
        first_sizes.iter().all(|&size| size == (320, 180)),
        "green's frames were not all 320x180: {:?}",
        &first_sizes[..first_sizes.len().min(10)]
    );
    let rungs = receiver_rungs(&server, room).await.expect("room described");
    let rung_of = |bot: &Bot| {
        rungs
            .iter()
            .find(|(id, _)| id == bot.id())
            .and_then(|(_, rung)| rung.clone())
    };
    assert_eq!(rung_of(&red).as_deref(), Some("1280x720@1500"), "{rungs:?}");
    assert_eq!(rung_of(&green).as_deref(), Some("320x180@150"), "{rungs:?}");
    assert_eq!(
        encoders_in(&server, room).await,
        Some(2),
        "two rungs in use"
    );

    // Mid-call changes: green up to 720p, red down to the middle rung.
    // Each switch happens once, at a keyframe, and the unused low rung stops.
    green.set_quality(Quality::High);
    red.set_quality(Quality::Medium);
    for (bot, size) in [(&green, (1280, 720)), (&red, (640, 360))] {
        eventually(TIMEOUT, || async {
            let frame = bot.latest_frame(Duration::from_secs(2)).await?;
            check_tiles(&frame, size, &COLOURS[..2])
        })
        .await
        .unwrap_or_else(|e| panic!("{} at {size:?}: {e:#}", bot.id()));
    }
    let sizes = sizes.lock().unwrap().clone();
    let changes = sizes.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(changes, 1, "green's frame sizes changed {changes} times");
    wait_for_encoders(&server, room, 2)
        .await
        .expect("the low rung stops once nobody receives it");
    for bot in [red, green] {
        assert!(
            bot.state().errors.is_empty(),
            "errors: {:?}",
            bot.state().errors
        );
        bot.leave().await;
    }
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}
