//! The browser client in real headless Chromium (fake camera and microphone)
//! against the server on loopback, with one bot whose colour the pages must
//! show: MCU (the composite), SFU and mesh (a tile per participant), a page
//! leaving, and a page reconnecting after the server drops its WebSocket.

mod browser_support;
mod common;

use anyhow::{Result, anyhow, ensure};
use browser_support::*;
use common::*;
use fantoccini::Locator;
use gridmix::bot::Bot;
use gridmix::bot::analysis::{colour_close, rgb_of};
use gridmix::config::ServeArgs;
use gridmix::media::layout::GridLayout;
use serde_json::Value;
use std::time::{Duration, Instant};

const BOT_COLOUR: u32 = 0xff00ff;
const TIMEOUT: Duration = Duration::from_secs(40);

/// Polls a page's state until `check` accepts it.
async fn wait_for_page(
    page: &Page,
    what: &str,
    check: impl Fn(&Value) -> Result<()>,
) -> Result<Value> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let state = page.state().await?;
        match check(&state) {
            Ok(()) => return Ok(state),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!(
                    "{}: {what} not reached within {TIMEOUT:?}",
                    page.name
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn others(state: &Value) -> Vec<String> {
    state["participants"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn joined_with(state: &Value, names: &[&str]) -> Result<()> {
    ensure!(state["status"] == "joined", "status is {}", state["status"]);
    let mut seen = others(state);
    seen.sort();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    ensure!(seen == want, "participants {seen:?}, want {want:?}");
    Ok(())
}

/// The page decodes video: its frame count rises between two looks.
async fn wait_for_rising_frames(page: &Page) -> Result<()> {
    let first = wait_for_page(page, "decoded frames", |s| {
        ensure!(
            s["framesDecoded"].as_u64().unwrap_or(0) > 0,
            "no frame decoded"
        );
        Ok(())
    })
    .await?;
    let before = first["framesDecoded"].as_u64().unwrap_or(0);
    wait_for_page(page, "more decoded frames", |s| {
        ensure!(
            s["framesDecoded"].as_u64().unwrap_or(0) > before,
            "framesDecoded stuck at {before}"
        );
        Ok(())
    })
    .await
    .map(|_| ())
}

/// The bot's colour at (fx, fy) of `target` (the composite or a tile).
async fn wait_for_bot_colour(page: &Page, target: &str, fx: f64, fy: f64) -> Result<()> {
    wait_for_page_colour(page, target, fx, fy, |rgb| {
        colour_close(rgb, rgb_of(BOT_COLOUR), COLOUR_TOLERANCE)
    })
    .await
    .map_err(|e| e.context(format!("want the bot's {BOT_COLOUR:06x}")))
}

/// Waits until the colour at (fx, fy) of `target` satisfies `wanted`.
async fn wait_for_page_colour(
    page: &Page,
    target: &str,
    fx: f64,
    fy: f64,
    wanted: impl Fn([u8; 3]) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let seen = page.sample(target, fx, fy).await;
        if seen.as_ref().is_ok_and(|&rgb| wanted(rgb)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "{}: {target} at ({fx:.2}, {fy:.2}) is {seen:?}",
                page.name
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn composite_playing(state: &Value) -> Result<()> {
    let c = &state["composite"];
    ensure!(c["playing"] == true, "composite not playing: {c}");
    ensure!(
        c["width"] == 1280 && c["height"] == 720,
        "composite is {}x{}",
        c["width"],
        c["height"]
    );
    Ok(())
}

/// The tiles a page shows, by participant name, each playing video.
fn tiles_playing(state: &Value, names: &[&str]) -> Result<()> {
    let tiles = state["tiles"].as_array().cloned().unwrap_or_default();
    let mut shown: Vec<String> = tiles
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    shown.sort();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    ensure!(shown == want, "tiles {shown:?}, want {want:?}");
    for t in &tiles {
        ensure!(
            t["playing"] == true && t["hasVideo"] == true && t["width"].as_u64().unwrap_or(0) > 0,
            "tile not playing: {t}"
        );
    }
    Ok(())
}

fn tile_id(state: &Value, name: &str) -> Option<String> {
    state["tiles"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == name)?["participant"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mcu_pages_play_the_composite_leave_and_reconnect() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start_server(ServeArgs::default()).await;
    let base = format!("http://{}", server.local_addr());
    let room = "browser-mcu";
    let bot = Bot::join(bot_config(&server, room, "bot", BOT_COLOUR, 600.0))
        .await
        .expect("bot joins");
    let chromium = Chromium::start().await.expect("chromedriver");
    let alice = chromium.page("alice").await.expect("alice's browser");
    let bob = chromium.page("bob").await.expect("bob's browser");
    let pages = [&alice, &bob];
    // One after the other, so the tile order (join order) is bot, alice, bob.
    or_screenshots(
        alice.join(&base, room, "mcu", false).await,
        "mcu-join",
        &pages,
    )
    .await;
    or_screenshots(
        wait_for_page(&alice, "joined", |s| joined_with(s, &["bot"])).await,
        "mcu-join",
        &pages,
    )
    .await;
    or_screenshots(
        bob.join(&base, room, "mcu", false).await,
        "mcu-join",
        &pages,
    )
    .await;

    let bot_tile = GridLayout::for_count(3, 1280, 720).tiles[0].centre();
    for (page, others) in [(&alice, ["bot", "bob"]), (&bob, ["bot", "alice"])] {
        let check = async {
            wait_for_page(page, "three in the call", |s| joined_with(s, &others)).await?;
            wait_for_page(page, "composite playing", composite_playing).await?;
            wait_for_rising_frames(page).await?;
            wait_for_bot_colour(
                page,
                "composite",
                f64::from(bot_tile.0) / 1280.0,
                f64::from(bot_tile.1) / 720.0,
            )
            .await
        };
        or_screenshots(check.await, "mcu-composite", &pages).await;
    }
    // The picture the README shows.
    // The pages' own cameras reach the composite too: their tiles leave the
    // placeholder grey for Chromium's fake camera picture.
    let grid = GridLayout::for_count(3, 1280, 720);
    for tile in &grid.tiles[1..] {
        let (x, y) = tile.centre();
        or_screenshots(
            wait_for_page_colour(
                &alice,
                "composite",
                f64::from(x) / 1280.0,
                f64::from(y) / 720.0,
                |rgb| {
                    !colour_close(rgb, rgb_of(PLACEHOLDER), COLOUR_TOLERANCE)
                        && rgb.iter().any(|&c| c > 60)
                },
            )
            .await,
            "mcu-page-cameras",
            &pages,
        )
        .await;
    }
    // The picture the README shows.
    let _ = alice.screenshot("mcu-three-participants").await;

    // Bob leaves: he disappears from Alice's call and from the composite.
    or_screenshots(bob.click("#leave").await, "mcu-leave", &pages).await;
    let two = GridLayout::for_count(2, 1280, 720).tiles[0].centre();
    let check = async {
        wait_for_page(&alice, "bob gone", |s| joined_with(s, &["bot"])).await?;
        wait_for_bot_colour(
            &alice,
            "composite",
            f64::from(two.0) / 1280.0,
            f64::from(two.1) / 720.0,
        )
        .await
    };
    or_screenshots(check.await, "mcu-leave", &pages).await;

    // The server restarts: every WebSocket is closed by the server. Alice's
    // page says it is reconnecting, then rejoins by itself.
    let addr = server.local_addr();
    bot.leave().await;
    server.shut_down().await;
    or_screenshots(
        wait_for_page(&alice, "reconnecting", |s| {
            ensure!(s["status"] == "reconnecting", "status is {}", s["status"]);
            Ok(())
        })
        .await,
        "mcu-reconnect",
        &pages,
    )
    .await;
    let server = start_server_at(ServeArgs::default(), addr).await;
    let check = async {
        wait_for_page(&alice, "rejoined", |s| joined_with(s, &[])).await?;
        wait_for_page(&alice, "composite playing again", composite_playing).await?;
        wait_for_rising_frames(&alice).await
    };
    or_screenshots(check.await, "mcu-reconnect", &pages).await;

    // Someone who refuses camera and microphone access is told so in words,
    // and can still join as a viewer and see the composite.
    let carol = chromium
        .page_denying_devices("carol")
        .await
        .expect("carol's browser");
    let pages = [&alice, &carol];
    or_screenshots(
        carol.join(&base, room, "mcu", false).await,
        "mcu-denied",
        &pages,
    )
    .await;
    let check = async {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let message = carol
                .client
                .find(Locator::Css("#join-message"))
                .await?
                .text()
                .await?;
            if message.contains("denied") {
                break;
            }
            ensure!(Instant::now() < deadline, "join message is {message:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        carol.click("input[name=viewer]").await?;
        carol.click("#join").await?;
        wait_for_page(&carol, "joined as a viewer", |s| joined_with(s, &["alice"])).await?;
        wait_for_page(&carol, "composite playing", composite_playing).await?;
        wait_for_rising_frames(&carol).await
    };
    or_screenshots(check.await, "mcu-denied", &pages).await;

    alice.close().await;
    bob.close().await;
    carol.close().await;
    server.shut_down().await;
}

/// SFU and mesh: two pages and a bot; each page shows a playing tile for
/// each other participant, the bot's in the bot's colour; a page that leaves
/// disappears from the other.
async fn tiles_for_everyone(mode: &str) {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start_server(ServeArgs::default()).await;
    let base = format!("http://{}", server.local_addr());
    let room = format!("browser-{mode}");
    let mut config = bot_config(&server, &room, "bot", BOT_COLOUR, 600.0);
    config.mode = if mode == "sfu" {
        gridmix::protocol::Mode::Sfu
    } else {
        gridmix::protocol::Mode::Mesh
    };
    let bot = Bot::join(config).await.expect("bot joins");
    let chromium = Chromium::start().await.expect("chromedriver");
    let alice = chromium.page("alice").await.expect("alice's browser");
    let bob = chromium.page("bob").await.expect("bob's browser");
    let pages = [&alice, &bob];
    let label = format!("{mode}-tiles");
    or_screenshots(alice.join(&base, &room, mode, false).await, &label, &pages).await;
    or_screenshots(
        wait_for_page(&alice, "joined", |s| joined_with(s, &["bot"])).await,
        &label,
        &pages,
    )
    .await;
    or_screenshots(bob.join(&base, &room, mode, false).await, &label, &pages).await;

    for (page, others) in [(&alice, ["bot", "bob"]), (&bob, ["bot", "alice"])] {
        let check = async {
            wait_for_page(page, "three in the call", |s| joined_with(s, &others)).await?;
            let state = wait_for_page(page, "a playing tile per participant", |s| {
                tiles_playing(s, &others)
            })
            .await?;
            wait_for_rising_frames(page).await?;
            let bot_id = tile_id(&state, "bot").ok_or_else(|| anyhow!("no bot tile"))?;
            ensure!(
                bot_id == bot.id(),
                "the bot's tile is labelled {bot_id}, the bot is {}",
                bot.id()
            );
            wait_for_bot_colour(page, &bot_id, 0.5, 0.5).await
        };
        or_screenshots(check.await, &label, &pages).await;
    }
    let _ = alice
        .screenshot(&format!("{mode}-three-participants"))
        .await;

    or_screenshots(bob.click("#leave").await, &label, &pages).await;
    let check = async {
        wait_for_page(&alice, "bob gone", |s| {
            joined_with(s, &["bot"])?;
            tiles_playing(s, &["bot"])
        })
        .await
    };
    or_screenshots(check.await, &format!("{mode}-leave"), &pages).await;
    assert!(
        bot.state().errors.is_empty(),
        "bot errors: {:?}",
        bot.state().errors
    );

    alice.close().await;
    bob.close().await;
    bot.leave().await;
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sfu_pages_show_a_tile_per_participant_and_drop_who_leaves() {
    tiles_for_everyone("sfu").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mesh_pages_show_a_tile_per_participant_and_drop_who_leaves() {
    tiles_for_everyone("mesh").await;
}

/// A live (HLS) recording: the page shows the recording indicator and a link
/// to watch; the watch page plays the stream in Chromium's own HLS player;
/// when the recording stops the indicator goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_recording_is_shown_and_can_be_watched() {
    let _one = ONE_AT_A_TIME.lock().await;
    let record_dir =
        std::env::temp_dir().join(format!("gridmix-browser-hls-{}", std::process::id()));
    let server = start_server(ServeArgs {
        record_dir: record_dir.clone(),
        ..ServeArgs::default()
    })
    .await;
    let base = format!("http://{}", server.local_addr());
    let room = "browser-hls";
    let bot = Bot::join(bot_config(&server, room, "bot", BOT_COLOUR, 600.0))
        .await
        .expect("bot joins");
    let chromium = Chromium::start().await.expect("chromedriver");
    let alice = chromium.page("alice").await.expect("alice's browser");
    let viewer = chromium.page("viewer").await.expect("the viewer's browser");
    let pages = [&alice, &viewer];
    or_screenshots(alice.join(&base, room, "mcu", false).await, "hls", &pages).await;
    or_screenshots(
        wait_for_page(&alice, "joined", |s| joined_with(s, &["bot"])).await,
        "hls",
        &pages,
    )
    .await;

    let api = recording_api::Api::new(server.local_addr());
    let recording = api.start(room, "hls").await;
    let id = recording["id"].as_str().expect("an id").to_owned();
    let state = or_screenshots(
        wait_for_page(&alice, "the recording shown", |s| {
            ensure!(
                s["recordings"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r == id.as_str())),
                "no recording in {}",
                s["recordings"]
            );
            ensure!(s["watch"].is_string(), "no watch link");
            Ok(())
        })
        .await,
        "hls",
        &pages,
    )
    .await;
    let watch = format!("{base}/{}", state["watch"].as_str().unwrap_or_default());
    or_screenshots(viewer.open(&watch).await, "hls-watch", &pages).await;
    let check = async {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let s = viewer.eval("return window.gridmixWatch.state();").await?;
            if s["playing"] == true
                && s["currentTime"].as_f64().unwrap_or(0.0) > 1.0
                && s["width"] == 1280
            {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the live stream does not play: {s}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    or_screenshots(check.await, "hls-watch", &pages).await;

    api.stop(room, &id).await;
    or_screenshots(
        wait_for_page(&alice, "the recording gone", |s| {
            ensure!(
                s["recordings"].as_array().is_some_and(|r| r.is_empty()),
                "still recording: {}",
                s["recordings"]
            );
            ensure!(s["watch"].is_null(), "the watch link stays");
            Ok(())
        })
        .await,
        "hls",
        &pages,
    )
    .await;

    alice.close().await;
    viewer.close().await;
    bot.leave().await;
    server.shut_down().await;
    let _ = std::fs::remove_dir_all(record_dir);
}

/// A page behind a proxy that refuses WebSocket falls back to long-poll by
/// itself, says so, and plays the call; it can leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_whose_websocket_is_blocked_falls_back_to_long_poll() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start_server(ServeArgs::default()).await;
    let base = format!("http://{}", server.local_addr());
    let room = "browser-blocked";
    let bot = Bot::join(bot_config(&server, room, "bot", BOT_COLOUR, 600.0))
        .await
        .expect("bot joins");
    let proxy = BlockingProxy::start().await.expect("proxy");
    let chromium = Chromium::start().await.expect("chromedriver");
    let alice = chromium
        .page_behind_proxy("alice", &proxy.addr)
        .await
        .expect("alice's browser");
    let pages = [&alice];
    or_screenshots(
        alice.join(&base, room, "mcu", false).await,
        "blocked",
        &pages,
    )
    .await;
    let bot_tile = GridLayout::for_count(2, 1280, 720).tiles[0].centre();
    let check = async {
        let state = wait_for_page(&alice, "joined over long-poll", |s| {
            joined_with(s, &["bot"])?;
            ensure!(
                s["transport"] == "long-poll",
                "transport {}",
                s["transport"]
            );
            Ok(())
        })
        .await?;
        ensure!(
            proxy.refused.load(std::sync::atomic::Ordering::SeqCst) > 0,
            "the page never tried the WebSocket"
        );
        let status = alice
            .client
            .find(Locator::Css("#status"))
            .await?
            .text()
            .await?;
        ensure!(status.contains("long-poll"), "status line: {status}");
        wait_for_page(&alice, "composite playing", composite_playing).await?;
        wait_for_rising_frames(&alice).await?;
        wait_for_bot_colour(
            &alice,
            "composite",
            f64::from(bot_tile.0) / 1280.0,
            f64::from(bot_tile.1) / 720.0,
        )
        .await?;
        let id = state["participant"].as_str().unwrap_or_default().to_owned();
        bot.wait_for_state(TIMEOUT, |s| s.others.iter().any(|p| p.id == id))
            .await?;
        // Leaving over long-poll is a DELETE: the bot hears it.
        alice.click("#leave").await?;
        bot.wait_for_state(TIMEOUT, |s| s.others.is_empty()).await?;
        Ok(())
    };
    or_screenshots(check.await, "blocked", &pages).await;
    alice.close().await;
    bot.leave().await;
    server.shut_down().await;
}

/// A page whose signaling connection drops resumes its session: the same
/// participant, the composite never stops, nobody sees it leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_whose_connection_drops_resumes_without_leaving() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start_server(ServeArgs::default()).await;
    let base = format!("http://{}", server.local_addr());
    let room = "browser-resume";
    let bot = Bot::join(bot_config(&server, room, "bot", BOT_COLOUR, 600.0))
        .await
        .expect("bot joins");
    let chromium = Chromium::start().await.expect("chromedriver");
    let alice = chromium.page("alice").await.expect("alice's browser");
    let pages = [&alice];
    or_screenshots(
        alice.join(&base, room, "mcu", false).await,
        "resume",
        &pages,
    )
    .await;
    let check = async {
        let state = wait_for_page(&alice, "joined", |s| {
            joined_with(s, &["bot"])?;
            ensure!(
                s["transport"] == "websocket",
                "transport {}",
                s["transport"]
            );
            Ok(())
        })
        .await?;
        let id = state["participant"].as_str().unwrap_or_default().to_owned();
        wait_for_page(&alice, "composite playing", composite_playing).await?;
        wait_for_rising_frames(&alice).await?;
        let bot_frames = bot.frames_received();

        alice
            .client
            .execute("window.gridmix.dropConnection();", vec![])
            .await?;
        let state = wait_for_page(&alice, "resumed", |s| {
            ensure!(s["status"] == "joined", "status {}", s["status"]);
            let said = s["messages"].to_string();
            ensure!(said.contains("Reconnected"), "messages {said}");
            Ok(())
        })
        .await?;
        ensure!(
            state["participant"] == id.as_str(),
            "participant {} after the resume, {id} before",
            state["participant"]
        );
        wait_for_rising_frames(&alice).await?;
        ensure!(
            bot.state().others.iter().any(|p| p.id == id),
            "the bot saw alice leave"
        );
        ensure!(
            bot.frames_received() > bot_frames,
            "the bot's video stopped"
        );
        Ok(())
    };
    or_screenshots(check.await, "resume", &pages).await;
    alice.close().await;
    bot.leave().await;
    server.shut_down().await;
}
