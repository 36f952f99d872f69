//! The browser client in real headless Chromium against the server on
//! loopback. Each page's fake camera films its own solid colour and its fake
//! microphone hears its own tone, and a bot sends its own too, so every
//! picture and every mix can be checked for exactly who is in it: MCU (the
//! composite, tile by tile, and the mix), SFU and mesh (a tile per
//! participant), muting, the camera off and on, a page leaving, a page
//! reconnecting after the server goes away (with its backoff), a resume that
//! keeps the call, the link's token and transport options, and the server's
//! sentences shown to the person.

mod browser_support;
mod common;

use anyhow::{Result, anyhow, ensure};
use browser_support::*;
use common::*;
use gridmix::bot::Bot;
use gridmix::bot::analysis::{colour_close, rgb_of};
use gridmix::config::ServeArgs;
use gridmix::media::layout::GridLayout;
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Who sends what: a colour far from the others' and a tone of its own.
const BOT: (u32, f64) = (0xff00ff, 600.0);
const ALICE: (u32, f64) = (0x00ffff, 900.0);
const BOB: (u32, f64) = (0xffff00, 1300.0);
const BLACK: u32 = 0x000000;
const TIMEOUT: Duration = Duration::from_secs(40);
/// Asking a browser for its state costs: look a few times a second.
const PAGE_POLL: Duration = Duration::from_millis(200);
/// Chromium's audio processing (gain control, noise suppression) brings the
/// fake microphone's 0.3 sine down to about 0.03 by the time it is heard:
/// far above silence (0.000), far below a bot's 0.3.
const PAGE_TONE_LEVEL: f64 = 0.01;

/// What a listener hears of pages: every tone in `present` there, none of
/// `absent` (MCU: the bot's mix when `stream` is None).
async fn wait_for_page_tones(
    bot: &Bot,
    stream: Option<&str>,
    present: &[f64],
    absent: &[f64],
) -> Result<()> {
    wait_for_tones_above(bot, stream, present, absent, PAGE_TONE_LEVEL, TIMEOUT).await
}

/// Polls a page's state until `check` accepts it.
async fn wait_for_page(
    page: &Page,
    what: &str,
    check: impl Fn(&Value) -> Result<()>,
) -> Result<Value> {
    eventually_every(TIMEOUT, PAGE_POLL, || async {
        let state = page.state().await?;
        check(&state)?;
        Ok(state)
    })
    .await
    .map_err(|e| e.context(format!("{}: {what}", page.name)))
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
    wait_for_rising(page, "framesDecoded", |_| Ok(())).await
}

/// What a page hears, as far as a headless browser on a machine without a
/// sound device can tell: `streams` audio streams arriving (inbound-rtp
/// stats), their packet count rising between two looks. Whether the sound
/// is the right one is checked where it can be: every page's voice is
/// heard by the bot, and the server's mix is what the bot hears too.
async fn wait_for_page_audio(page: &Page, streams: u64) -> Result<()> {
    wait_for_rising(page, "audioPacketsIn", |s| {
        let arriving = s["audioStreamsIn"].as_u64().unwrap_or(0);
        ensure!(
            arriving >= streams,
            "{arriving} audio streams arriving, want {streams}"
        );
        Ok(())
    })
    .await
}

/// Waits until the page's counter `field` is above 0 and `check` accepts
/// the state, then until the counter has risen.
async fn wait_for_rising(
    page: &Page,
    field: &str,
    check: impl Fn(&Value) -> Result<()>,
) -> Result<()> {
    let first = wait_for_page(page, &format!("{field} counting"), |s| {
        ensure!(s[field].as_u64().unwrap_or(0) > 0, "{field} is 0");
        check(s)
    })
    .await?;
    let before = first[field].as_u64().unwrap_or(0);
    wait_for_page(page, &format!("{field} rising"), |s| {
        ensure!(
            s[field].as_u64().unwrap_or(0) > before,
            "{field} stuck at {before}"
        );
        Ok(())
    })
    .await
    .map(|_| ())
}

/// Waits until the colour at (fx, fy) of `target` (the composite or a
/// participant's tile) is `colour`.
async fn wait_for_page_colour(
    page: &Page,
    target: &str,
    fx: f64,
    fy: f64,
    colour: u32,
) -> Result<()> {
    eventually_every(TIMEOUT, PAGE_POLL, || async {
        let seen = page.sample(target, fx, fy).await?;
        ensure!(
            colour_close(seen, rgb_of(colour), COLOUR_TOLERANCE),
            "{target} at ({fx:.2}, {fy:.2}) is {seen:?}, want {colour:06x}"
        );
        Ok(())
    })
    .await
    .map_err(|e| e.context(page.name.clone()))
}

/// Waits until every tile of the page's composite shows its participant's
/// colour, in join order.
async fn wait_for_composite_tiles(page: &Page, colours: &[u32]) -> Result<()> {
    let grid = GridLayout::for_count(colours.len(), 1280, 720);
    for (tile, &colour) in grid.tiles.iter().zip(colours) {
        let (x, y) = tile.centre();
        wait_for_page_colour(
            page,
            "composite",
            f64::from(x) / 1280.0,
            f64::from(y) / 720.0,
            colour,
        )
        .await?;
    }
    Ok(())
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

/// Waits until the picture the bot receives from `stream` (a page's
/// participant id) has `colour` at its centre, whatever size the browser
/// chose to send.
async fn wait_for_centre_colour(bot: &Bot, stream: &str, colour: u32) -> Result<()> {
    eventually(TIMEOUT, || async {
        let frame = bot.frame_from(stream, Duration::from_secs(2)).await?;
        let centre = frame.mean_rgb(frame.width as i32 / 2, frame.height as i32 / 2, 8);
        ensure!(
            colour_close(centre, rgb_of(colour), COLOUR_TOLERANCE),
            "{stream}: centre is {centre:?}, want {colour:06x}"
        );
        Ok(())
    })
    .await
}

/// Alice's and Bob's pages in `browsers`, each with its camera and
/// microphone. The Chromium pages come from `chromium`, started if needed.
async fn alice_and_bob_in(chromium: &mut Option<Chromium>, browsers: [Browser; 2]) -> (Page, Page) {
    let mut pages = Vec::new();
    for (browser, name, (colour, tone)) in
        [(browsers[0], "alice", ALICE), (browsers[1], "bob", BOB)]
    {
        let page = match browser {
            Browser::Chromium => {
                if chromium.is_none() {
                    *chromium = Some(Chromium::start().await.expect("chromedriver"));
                }
                let chromium = chromium.as_ref().expect("just started");
                chromium.page_with_devices(name, colour, tone).await
            }
            Browser::Firefox => firefox_page(name, colour, tone).await,
        };
        pages.push(page.unwrap_or_else(|e| panic!("{name}'s {browser:?}: {e:#}")));
    }
    let bob = pages.pop().expect("two pages");
    let alice = pages.pop().expect("two pages");
    (alice, bob)
}

/// Chromium with Alice's page alone (her camera and microphone); the
/// browser lasts as long as the first value is kept.
async fn alice_alone() -> (Chromium, Page) {
    let chromium = Chromium::start().await.expect("chromedriver");
    let alice = chromium
        .page_with_devices("alice", ALICE.0, ALICE.1)
        .await
        .expect("alice's browser");
    (chromium, alice)
}

/// Alice's and Bob's browsers, each with its camera and microphone.
async fn alice_and_bob(chromium: &Chromium) -> (Page, Page) {
    let alice = chromium
        .page_with_devices("alice", ALICE.0, ALICE.1)
        .await
        .expect("alice's browser");
    let bob = chromium
        .page_with_devices("bob", BOB.0, BOB.1)
        .await
        .expect("bob's browser");
    (alice, bob)
}

/// In the call with the bot, over long-poll.
fn joined_over_long_poll(state: &Value) -> Result<()> {
    joined_with(state, &["bot"])?;
    ensure!(
        state["transport"] == "long-poll",
        "transport {}",
        state["transport"]
    );
    Ok(())
}

/// Waits until the join form's message (why the page is not in a call)
/// says `words`.
async fn wait_for_join_message(page: &Page, words: &str) -> Result<()> {
    eventually_every(TIMEOUT, PAGE_POLL, || async {
        let message = page.text("#join-message").await?;
        ensure!(message.contains(words), "join message is {message:?}");
        Ok(())
    })
    .await
}

/// The page's state field `field` as a string.
fn text_of(state: &Value, field: &str) -> String {
    state[field].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mcu_pages_are_seen_and_heard_tile_by_tile_mute_leave_and_reconnect() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start_server(ServeArgs::default()).await;
    let base = format!("http://{}", server.local_addr());
    let room = "browser-mcu";
    let bot = Bot::join(bot_config(&server, room, "bot", BOT.0, BOT.1))
        .await
        .expect("bot joins");
    let chromium = Chromium::start().await.expect("chromedriver");
    let (alice, bob) = alice_and_bob(&chromium).await;
    let pages = [&alice, &bob];
    // One after the other, so the tile order (join order) is bot, alice, bob.
    let check = async {
        alice.join(&base, room, "mcu", false).await?;
        wait_for_page(&alice, "joined", |s| joined_with(s, &["bot"])).await?;
        bob.join(&base, room, "mcu", false).await
    };
    or_screenshots(check.await, "mcu-join", &pages).await;

    let colours = [BOT.0, ALICE.0, BOB.0];
    for (page, others) in [(&alice, ["bot", "bob"]), (&bob, ["bot", "alice"])] {
        let check = async {
            wait_for_page(page, "three in the call", |s| joined_with(s, &others)).await?;
            wait_for_page(page, "composite playing", composite_playing).await?;
            wait_for_rising_frames(page).await?;
            // Everyone in their own tile: the bot's and both cameras.
            wait_for_composite_tiles(page, &colours).await
        };
        or_screenshots(check.await, "mcu-composite", &pages).await;
    }
    // The bot sees the same grid and hears both pages, not itself.
    let check = async {
        wait_for_tiles(&bot, &colours, TIMEOUT).await?;
        wait_for_page_tones(&bot, None, &[ALICE.1, BOB.1], &[BOT.1]).await
    };
    or_screenshots(check.await, "mcu-bot", &pages).await;
    // The picture the README shows.
    let _ = alice.screenshot("mcu-three-participants").await;

    // Alice mutes: the others hear Bob and not her; unmutes: her again.
    let check = async {
        alice.click("#mic").await?;
        wait_for_page_tones(&bot, None, &[BOB.1], &[ALICE.1, BOT.1]).await?;
        alice.click("#mic").await?;
        wait_for_page_tones(&bot, None, &[ALICE.1, BOB.1], &[BOT.1]).await?;
        // Her camera off: her tile goes black for everyone; on: her colour.
        alice.click("#camera").await?;
        wait_for_tiles(&bot, &[BOT.0, BLACK, BOB.0], TIMEOUT).await?;
        wait_for_composite_tiles(&bob, &[BOT.0, BLACK, BOB.0]).await?;
        alice.click("#camera").await?;
        wait_for_tiles(&bot, &colours, TIMEOUT).await
    };
    or_screenshots(check.await, "mcu-mute-camera", &pages).await;

    // Bob leaves: he disappears from Alice's call, from the composite and
    // from the mix.
    or_screenshots(bob.click("#leave").await, "mcu-leave", &pages).await;
    let check = async {
        wait_for_page(&alice, "bob gone", |s| joined_with(s, &["bot"])).await?;
        wait_for_composite_tiles(&alice, &[BOT.0, ALICE.0]).await?;
        wait_for_page_tones(&bot, None, &[ALICE.1], &[BOB.1, BOT.1]).await
    };
    or_screenshots(check.await, "mcu-leave", &pages).await;

    // The server goes away: every WebSocket is closed by the server. Alice's
    // page says it is reconnecting and tries again after 0.5 s, 1 s, 2 s,
    // 4 s (README: doubling up to 5 s); the server comes back and the page
    // rejoins by itself.
    let addr = server.local_addr();
    bot.leave().await;
    server.shut_down().await;
    let check = async {
        wait_for_page(&alice, "reconnecting", |s| {
            ensure!(s["status"] == "reconnecting", "status is {}", s["status"]);
            Ok(())
        })
        .await?;
        let state = wait_for_page(&alice, "four tries", |s| {
            let tries = s["reconnectDelays"].as_array().map_or(0, Vec::len);
            ensure!(tries >= 4, "{tries} tries so far");
            Ok(())
        })
        .await?;
        let delays: Vec<u64> = state["reconnectDelays"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .collect();
        ensure!(delays[..4] == [500, 1000, 2000, 4000], "delays {delays:?}");
        ensure!(
            state["status"] == "reconnecting",
            "status {}",
            state["status"]
        );
        Ok(())
    };
    or_screenshots(check.await, "mcu-backoff", &[&alice]).await;
    let server = start_server_at(ServeArgs::default(), addr).await;
    let check = async {
        wait_for_page(&alice, "rejoined", |s| joined_with(s, &[])).await?;
        wait_for_page(&alice, "composite playing again", composite_playing).await?;
        wait_for_rising_frames(&alice).await?;
        wait_for_composite_tiles(&alice, &[ALICE.0]).await
    };
    or_screenshots(check.await, "mcu-reconnect", &[&alice]).await;

    // Someone who refuses camera and microphone access is told so in words,
    // and can still join as a viewer and see the composite.
    let carol = chromium
        .page_denying_devices("carol")
        .await
        .expect("carol's browser");
    let pages = [&alice, &carol];
    let check = async {
        carol.join(&base, room, "mcu", false).await?;
        wait_for_join_message(&carol, "denied").await?;
        carol.click("input[name=viewer]").await?;
        carol.click("#join").await?;
        wait_for_page(&carol, "joined as a viewer", |s| joined_with(s, &["alice"])).await?;
        wait_for_page(&carol, "composite playing", composite_playing).await?;
        wait_for_rising_frames(&carol).await?;
        // Alice's tile and the viewer's placeholder.
        wait_for_composite_tiles(&carol, &[ALICE.0, PLACEHOLDER]).await
    };
    or_screenshots(check.await, "mcu-denied", &pages).await;

    alice.close().await;
    bob.close().await;
    carol.close().await;
    server.shut_down().await;
}

/// SFU and mesh: two pages and a bot; each page shows a playing tile for
/// each other participant in that participant's colour, the bot gets each
/// page's picture and voice; a page that leaves disappears from the other.
async fn tiles_for_everyone(mode: &str, browsers: [Browser; 2]) {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start_server(ServeArgs::default()).await;
    let base = format!("http://{}", server.local_addr());
    let room = format!("browser-{mode}");
    let label = format!("{mode}-{}", browsers_label(browsers));
    let mut config = bot_config(&server, &room, "bot", BOT.0, BOT.1);
    config.mode = if mode == "sfu" {
        gridmix::protocol::Mode::Sfu
    } else {
        gridmix::protocol::Mode::Mesh
    };
    let bot = Bot::join(config).await.expect("bot joins");
    let mut chromium = None;
    let (alice, bob) = alice_and_bob_in(&mut chromium, browsers).await;
    let pages = [&alice, &bob];
    let label = format!("{label}-tiles");
    let check = async {
        alice.join(&base, &room, mode, false).await?;
        wait_for_page(&alice, "joined", |s| joined_with(s, &["bot"])).await?;
        bob.join(&base, &room, mode, false).await
    };
    or_screenshots(check.await, &label, &pages).await;

    let mut ids = Vec::new();
    for (page, others, other_colour) in [
        (&alice, ["bot", "bob"], BOB.0),
        (&bob, ["bot", "alice"], ALICE.0),
    ] {
        let check = async {
            wait_for_page(page, "three in the call", |s| joined_with(s, &others)).await?;
            let state = wait_for_page(page, "a playing tile per participant", |s| {
                tiles_playing(s, &others)
            })
            .await?;
            wait_for_rising_frames(page).await?;
            wait_for_page_audio(page, 2).await?;
            let bot_id = tile_id(&state, "bot").ok_or_else(|| anyhow!("no bot tile"))?;
            ensure!(
                bot_id == bot.id(),
                "the bot's tile is labelled {bot_id}, the bot is {}",
                bot.id()
            );
            wait_for_page_colour(page, &bot_id, 0.5, 0.5, BOT.0).await?;
            let other =
                tile_id(&state, others[1]).ok_or_else(|| anyhow!("no {} tile", others[1]))?;
            wait_for_page_colour(page, &other, 0.5, 0.5, other_colour).await?;
            Ok(text_of(&state, "participant"))
        };
        ids.push(or_screenshots(check.await, &label, &pages).await);
    }
    // The bot gets each page's own picture and voice, on its own track.
    let check = async {
        for (id, (colour, tone)) in ids.iter().zip([ALICE, BOB]) {
            wait_for_centre_colour(&bot, id, colour).await?;
            wait_for_page_tones(&bot, Some(id), &[tone], &[BOT.1]).await?;
        }
        Ok(())
    };
    or_screenshots(check.await, &format!("{label}-bot"), &pages).await;
    if browsers == [Browser::Chromium; 2] {
        let _ = alice
            .screenshot(&format!("{mode}-three-participants"))
            .await;
    }

    or_screenshots(bob.click("#leave").await, &label, &pages).await;
    let check = async {
        wait_for_page(&alice, "bob gone", |s| {
            joined_with(s, &["bot"])?;
            tiles_playing(s, &["bot"])
        })
        .await
    };
    or_screenshots(check.await, &format!("{label}-leave"), &pages).await;
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
async fn sfu_pages_show_each_participant_in_its_tile_and_drop_who_leaves() {
    tiles_for_everyone("sfu", [Browser::Chromium; 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mesh_pages_show_each_participant_in_its_tile_and_drop_who_leaves() {
    tiles_for_everyone("mesh", [Browser::Chromium; 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn firefox_pages_in_an_sfu_room_see_and_hear_everyone() {
    tiles_for_everyone("sfu", [Browser::Firefox; 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn firefox_pages_in_a_mesh_room_see_and_hear_everyone() {
    tiles_for_everyone("mesh", [Browser::Firefox; 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chromium_and_firefox_in_one_sfu_room_see_and_hear_each_other() {
    tiles_for_everyone("sfu", [Browser::Chromium, Browser::Firefox]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chromium_and_firefox_in_one_mesh_room_see_and_hear_each_other() {
    tiles_for_everyone("mesh", [Browser::Chromium, Browser::Firefox]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn firefox_pages_in_an_mcu_room_see_the_composite_and_are_heard() {
    composite_for_everyone([Browser::Firefox; 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chromium_and_firefox_in_one_mcu_room_share_the_composite() {
    composite_for_everyone([Browser::Chromium, Browser::Firefox]).await;
}

/// A Chromium page and a Firefox page join an SFU room that already has
/// four publishers: the first subscribe offer each gets has four video
/// m-lines with the same payload type (and four audio ones), which a
/// browser tells apart by SSRC or by the MID header extension. Each page
/// must show every publisher in its own colour and receive all four
/// voices.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_pages_in_an_sfu_room_see_every_publisher_already_there() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start_server(ServeArgs::default()).await;
    let base = format!("http://{}", server.local_addr());
    let room = "browser-sfu-late";
    let mut bots = Vec::new();
    for (i, (colour, tone)) in SENDERS.iter().enumerate() {
        let mut config = bot_config(&server, room, &format!("bot{i}"), *colour, *tone);
        config.mode = gridmix::protocol::Mode::Sfu;
        bots.push(Bot::join(config).await.expect("bot joins"));
    }
    let names: Vec<String> = (0..bots.len()).map(|i| format!("bot{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    for bot in &bots {
        bot.wait_for_state(TIMEOUT, |s| {
            s.live_streams(gridmix::media::sdp::MediaKind::Video).len() == 3
        })
        .await
        .expect("the publishers see each other");
    }
    let mut chromium = None;
    let (alice, bob) = alice_and_bob_in(&mut chromium, [Browser::Chromium, Browser::Firefox]).await;
    let pages = [&alice, &bob];
    for page in pages {
        let check = async {
            page.join(&base, room, "sfu", true).await?;
            // The other page is a viewer, with a tile but no picture.
            let state = wait_for_page(page, "a playing tile per publisher", |s| {
                let mut publishers = s.clone();
                if let Some(tiles) = publishers["tiles"].as_array_mut() {
                    tiles.retain(|t| t["name"].as_str().is_some_and(|n| n.starts_with("bot")));
                }
                tiles_playing(&publishers, &names)
            })
            .await?;
            for (name, (colour, _)) in names.iter().zip(SENDERS) {
                let id = tile_id(&state, name).ok_or_else(|| anyhow!("no {name} tile"))?;
                wait_for_page_colour(page, &id, 0.5, 0.5, colour).await?;
            }
            wait_for_page_audio(page, 4).await
        };
        or_screenshots(check.await, &format!("sfu-late-{}", page.name), &pages).await;
    }
    alice.close().await;
    bob.close().await;
    for bot in bots {
        assert!(
            bot.state().errors.is_empty(),
            "bot errors: {:?}",
            bot.state().errors
        );
        bot.leave().await;
    }
    server.shut_down().await;
}

/// A Chromium viewer and a Firefox viewer stay in an SFU room while
/// publishers come and go. Each departed publisher leaves two inactive
/// m-lines that webrtcbin 1.22 cannot reuse, so the server gives each page
/// a fresh subscribe connection (an offer with "newConnection"); the page
/// answers it on a new RTCPeerConnection and closes the old one once the
/// new is connected. Afterwards each page still shows the steady publisher
/// and a late one in their colours and receives both voices, and the
/// server holds no replaced connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sfu_pages_move_to_a_fresh_subscribe_connection_as_publishers_come_and_go() {
    use gridmix::media::subscription::RENEW_AFTER_ENDED;
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start_server(ServeArgs::default()).await;
    let base = format!("http://{}", server.local_addr());
    let room = "browser-sfu-renew";
    let join_bot = |name: &str, (colour, tone): (u32, f64)| {
        let mut config = bot_config(&server, room, name, colour, tone);
        config.mode = gridmix::protocol::Mode::Sfu;
        Bot::join(config)
    };
    let steady = join_bot("steady", SENDERS[0]).await.expect("bot joins");
    let mut chromium = None;
    let (alice, bob) = alice_and_bob_in(&mut chromium, [Browser::Chromium, Browser::Firefox]).await;
    let pages = [&alice, &bob];
    for page in pages {
        let check = async {
            page.join(&base, room, "sfu", true).await?;
            wait_for_page(page, "the steady publisher's tile", |s| {
                tiles_playing(&publishers_only(s), &["steady"])
            })
            .await
        };
        or_screenshots(check.await, &format!("sfu-renew-{}", page.name), &pages).await;
    }
    let churners = RENEW_AFTER_ENDED / 2 + 1;
    for i in 0..churners {
        let name = format!("churn{i}");
        let churn = join_bot(&name, SENDERS[1 + i % 3])
            .await
            .expect("bot joins");
        for page in pages {
            let what = format!("{name}'s tile");
            let check = wait_for_page(page, &what, |s| {
                tiles_playing(&publishers_only(s), &["steady", &name])
            });
            or_screenshots(check.await, &format!("sfu-renew-{name}"), &pages).await;
        }
        churn.leave().await;
    }
    let late = join_bot("late", SENDERS[3]).await.expect("bot joins");
    for page in pages {
        let check = async {
            let state = wait_for_page(page, "a fresh subscribe connection", |s| {
                ensure!(
                    s["peerConnectionsMade"].as_u64().unwrap_or(0) >= 2,
                    "still on its first subscribe connection"
                );
                tiles_playing(&publishers_only(s), &["steady", "late"])
            })
            .await?;
            for (name, colour) in [("steady", SENDERS[0].0), ("late", SENDERS[3].0)] {
                let id = tile_id(&state, name).ok_or_else(|| anyhow!("no {name} tile"))?;
                wait_for_page_colour(page, &id, 0.5, 0.5, colour).await?;
            }
            wait_for_page_audio(page, 2).await?;
            // The bots' tones are loud: their tiles are marked as speaking,
            // from the levels in their packets.
            wait_for_page(page, "the speakers' tiles marked", |s| {
                let tiles = s["tiles"].as_array().cloned().unwrap_or_default();
                for name in ["steady", "late"] {
                    ensure!(
                        tiles
                            .iter()
                            .any(|t| t["name"] == name && t["speaking"] == true),
                        "{name}'s tile is not marked speaking: {tiles:?}"
                    );
                }
                Ok(())
            })
            .await
            .map(|_| ())
        };
        or_screenshots(
            check.await,
            &format!("sfu-renew-after-{}", page.name),
            &pages,
        )
        .await;
    }
    // Two webrtcbins per participant (publish and subscribe), none left
    // over from the replaced subscribe connections.
    let check = wait_for_peer_connections(&server, room, 8, TIMEOUT);
    or_screenshots(check.await, "sfu-renew-server", &pages).await;
    alice.close().await;
    bob.close().await;
    for bot in [steady, late] {
        assert!(
            bot.state().errors.is_empty(),
            "bot errors: {:?}",
            bot.state().errors
        );
        bot.leave().await;
    }
    server.shut_down().await;
}

/// A page's state with only the publishers' tiles (a viewer has a tile
/// without a picture).
fn publishers_only(state: &Value) -> Value {
    let mut publishers = state.clone();
    if let Some(tiles) = publishers["tiles"].as_array_mut() {
        tiles.retain(|t| {
            t["name"]
                .as_str()
                .is_some_and(|n| n != "alice" && n != "bob")
        });
    }
    publishers
}

/// "chromium-firefox" and the like, for screenshot names.
fn browsers_label(browsers: [Browser; 2]) -> String {
    browsers.map(|b| format!("{b:?}").to_lowercase()).join("-")
}

/// MCU with two pages in `browsers` and a bot: every page shows the
/// composite with everyone's tile in its place, the bot sees the same grid
/// and hears both pages (not itself); a page that leaves goes from the
/// grid and the mix.
async fn composite_for_everyone(browsers: [Browser; 2]) {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start_server(ServeArgs::default()).await;
    let base = format!("http://{}", server.local_addr());
    let room = "browser-mcu-mixed";
    let label = format!("mcu-{}", browsers_label(browsers));
    let bot = Bot::join(bot_config(&server, room, "bot", BOT.0, BOT.1))
        .await
        .expect("bot joins");
    let mut chromium = None;
    let (alice, bob) = alice_and_bob_in(&mut chromium, browsers).await;
    let pages = [&alice, &bob];
    let check = async {
        alice.join(&base, room, "mcu", false).await?;
        wait_for_page(&alice, "joined", |s| joined_with(s, &["bot"])).await?;
        bob.join(&base, room, "mcu", false).await
    };
    or_screenshots(check.await, &label, &pages).await;
    let colours = [BOT.0, ALICE.0, BOB.0];
    for (page, others) in [(&alice, ["bot", "bob"]), (&bob, ["bot", "alice"])] {
        let check = async {
            wait_for_page(page, "three in the call", |s| joined_with(s, &others)).await?;
            wait_for_page(page, "composite playing", composite_playing).await?;
            wait_for_rising_frames(page).await?;
            // The one mix made for this page.
            wait_for_page_audio(page, 1).await?;
            wait_for_composite_tiles(page, &colours).await
        };
        or_screenshots(check.await, &format!("{label}-composite"), &pages).await;
    }
    let check = async {
        wait_for_tiles(&bot, &colours, TIMEOUT).await?;
        wait_for_page_tones(&bot, None, &[ALICE.1, BOB.1], &[BOT.1]).await
    };
    or_screenshots(check.await, &format!("{label}-bot"), &pages).await;
    or_screenshots(bob.click("#leave").await, &label, &pages).await;
    let check = async {
        wait_for_page(&alice, "bob gone", |s| joined_with(s, &["bot"])).await?;
        wait_for_composite_tiles(&alice, &[BOT.0, ALICE.0]).await?;
        wait_for_page_tones(&bot, None, &[ALICE.1], &[BOB.1, BOT.1]).await
    };
    or_screenshots(check.await, &format!("{label}-leave"), &pages).await;
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
    let bot = Bot::join(bot_config(&server, room, "bot", BOT.0, BOT.1))
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
    let check = eventually_every(TIMEOUT, PAGE_POLL, || async {
        let s = viewer.eval("return window.gridmixWatch.state();").await?;
        ensure!(
            s["playing"] == true
                && s["currentTime"].as_f64().unwrap_or(0.0) > 1.0
                && s["width"] == 1280,
            "the live stream does not play: {s}"
        );
        Ok(())
    });
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
/// itself, says so, and plays the call; it can leave. A page whose link asks
/// for long-poll uses it without trying the WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_poll_when_the_websocket_is_blocked_or_the_link_asks_for_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start_server(ServeArgs::default()).await;
    let base = format!("http://{}", server.local_addr());
    let room = "browser-blocked";
    let bot = Bot::join(bot_config(&server, room, "bot", BOT.0, BOT.1))
        .await
        .expect("bot joins");
    let proxy = BlockingProxy::start().await.expect("proxy");
    let chromium = Chromium::start().await.expect("chromedriver");
    let alice = chromium
        .page_behind_proxy("alice", &proxy.addr, ALICE.0, ALICE.1)
        .await
        .expect("alice's browser");
    let pages = [&alice];
    or_screenshots(
        alice.join(&base, room, "mcu", false).await,
        "blocked",
        &pages,
    )
    .await;
    let check = async {
        let state = wait_for_page(&alice, "joined over long-poll", joined_over_long_poll).await?;
        ensure!(
            proxy.refused.load(std::sync::atomic::Ordering::SeqCst) > 0,
            "the page never tried the WebSocket"
        );
        let status = alice.text("#status").await?;
        ensure!(status.contains("long-poll"), "status line: {status}");
        wait_for_page(&alice, "composite playing", composite_playing).await?;
        wait_for_rising_frames(&alice).await?;
        wait_for_composite_tiles(&alice, &[BOT.0, ALICE.0]).await?;
        let id = text_of(&state, "participant");
        bot.wait_for_state(TIMEOUT, |s| s.others.iter().any(|p| p.id == id))
            .await?;
        // Leaving over long-poll is a DELETE: the bot hears it.
        alice.click("#leave").await?;
        bot.wait_for_state(TIMEOUT, |s| s.others.is_empty()).await?;
        Ok(())
    };
    or_screenshots(check.await, "blocked", &pages).await;
    alice.close().await;

    // ?transport=long-poll: long-poll at once, with nothing blocking the
    // WebSocket; seen and heard like anyone.
    let bob = chromium
        .page_with_devices("bob", BOB.0, BOB.1)
        .await
        .expect("bob's browser");
    let pages = [&bob];
    let check = async {
        bob.join_with(&base, room, "mcu", "&transport=long-poll")
            .await?;
        wait_for_page(&bob, "joined over long-poll", joined_over_long_poll).await?;
        wait_for_composite_tiles(&bob, &[BOT.0, BOB.0]).await?;
        wait_for_page_tones(&bot, None, &[BOB.1], &[BOT.1]).await
    };
    or_screenshots(check.await, "long-poll-link", &pages).await;
    bob.close().await;
    bot.leave().await;
    server.shut_down().await;
}

/// A page whose signaling connection drops resumes its session: the same
/// participant and the same peer connection (none made anew), its camera
/// in its tile in every frame the others decode meanwhile, and nobody sees
/// it leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_whose_connection_drops_resumes_without_leaving() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start_server(ServeArgs::default()).await;
    let base = format!("http://{}", server.local_addr());
    let room = "browser-resume";
    let watch = TileWatch::default();
    let alice_tile = GridLayout::for_count(2, 1280, 720).tiles[1].centre();
    let mut config = bot_config(&server, room, "bot", BOT.0, BOT.1);
    config.on_frame = Some(watch.observer(alice_tile, ALICE.0));
    let bot = Bot::join(config).await.expect("bot joins");
    let (_chromium, alice) = alice_alone().await;
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
        let id = text_of(&state, "participant");
        wait_for_page(&alice, "composite playing", composite_playing).await?;
        wait_for_rising_frames(&alice).await?;
        wait_for_composite_tiles(&alice, &[BOT.0, ALICE.0]).await?;
        wait_for_tiles(&bot, &[BOT.0, ALICE.0], TIMEOUT).await?;
        let made = state["peerConnectionsMade"].as_u64();
        ensure!(made == Some(1), "peer connections made: {made:?}");

        watch.armed.store(true, Ordering::SeqCst);
        alice.eval("window.gridmix.dropConnection();").await?;
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
        ensure!(
            state["peerConnectionsMade"].as_u64() == made,
            "the resume made a new peer connection: {}",
            state["peerConnectionsMade"]
        );
        wait_for_rising_frames(&alice).await?;
        wait_for_composite_tiles(&alice, &[BOT.0, ALICE.0]).await?;
        watch.armed.store(false, Ordering::SeqCst);
        let (seen, wrong) = (
            watch.seen.load(Ordering::SeqCst),
            watch.wrong.load(Ordering::SeqCst),
        );
        ensure!(seen > 0, "the bot decoded nothing while alice resumed");
        ensure!(
            wrong == 0,
            "alice's tile left her colour in {wrong} of {seen} frames while she resumed"
        );
        ensure!(
            bot.state().others.iter().any(|p| p.id == id),
            "the bot saw alice leave"
        );
        Ok(())
    };
    or_screenshots(check.await, "resume", &pages).await;
    alice.close().await;
    bot.leave().await;
    server.shut_down().await;
}

/// With --auth-secret: a link's `?token=` admits the page; without one the
/// page shows the server's sentence and stays at the form; and when the
/// same identity joins from elsewhere the page says so and steps aside.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_in_the_link_admits_the_page_and_a_refusal_is_said_in_words() {
    let _one = ONE_AT_A_TIME.lock().await;
    let secret = "browser secret";
    let server = start_server(ServeArgs {
        auth_secret: Some(secret.to_owned()),
        ..ServeArgs::default()
    })
    .await;
    let base = format!("http://{}", server.local_addr());
    let room = "browser-token";
    let (_chromium, alice) = alice_alone().await;
    let pages = [&alice];
    let check = async {
        alice.join(&base, room, "mcu", false).await?;
        // Back at the form, the server's own sentence shown.
        wait_for_join_message(&alice, "token").await?;
        let state = alice.state().await?;
        ensure!(state["status"] == "left", "status {}", state["status"]);
        let token = gridmix::auth::issue_token(
            secret,
            room,
            "alice",
            Duration::from_secs(3600),
            true,
            gridmix::auth::unix_now(),
        )?;
        alice
            .join_with(&base, room, "mcu", &format!("&token={token}"))
            .await?;
        wait_for_page(&alice, "joined with the link's token", |s| {
            joined_with(s, &[])
        })
        .await?;
        wait_for_page(&alice, "composite playing", composite_playing).await?;
        wait_for_composite_tiles(&alice, &[ALICE.0]).await?;
        // Alice joins from elsewhere with the same token (a bot): the page
        // is told it was replaced, steps aside and stays out, rather than
        // reconnecting and taking the place back.
        let mut config = bot_config(&server, room, "alice elsewhere", 0x00ff00, 700.0);
        config.token = Some(token);
        let elsewhere = Bot::join(config).await?;
        wait_for_join_message(&alice, "same identity").await?;
        let state = alice.state().await?;
        ensure!(state["status"] == "left", "status {}", state["status"]);
        wait_for_tiles(&elsewhere, &[0x00ff00], TIMEOUT).await?;
        let rooms = open_rooms(&server).await?;
        let names: Vec<&str> = rooms
            .iter()
            .flat_map(|r| r.participants.iter().map(|p| p.name.as_str()))
            .collect();
        ensure!(names == ["alice elsewhere"], "in the room: {names:?}");
        ensure!(
            elsewhere.state().errors.is_empty(),
            "{:?}",
            elsewhere.state().errors
        );
        elsewhere.leave().await;
        Ok(())
    };
    or_screenshots(check.await, "token", &pages).await;
    alice.close().await;
    server.shut_down().await;
}

/// The expiries of the TURN usernames each of a page's connections holds.
fn turn_expiries(state: &Value) -> Vec<u64> {
    state["turnUsernames"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|names| names.as_array().cloned().unwrap_or_default())
        .filter_map(|name| name.as_str()?.split_once(':')?.0.parse().ok())
        .collect()
}

/// TURN credentials are short-lived and renewed ("ice-servers"): a
/// Chromium page and a Firefox page in a mesh call hand the fresh ones to
/// their open connections (setConfiguration), and the call goes on.
/// (No TURN server answers here: host candidates carry the call; the
/// coturn test in turn_relay.rs relays with renewed credentials.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_take_renewed_turn_credentials_and_the_call_goes_on() {
    let _one = ONE_AT_A_TIME.lock().await;
    let nobody = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let ttl = 2;
    let server = start_server(ServeArgs {
        turn: Some(format!(
            "turn:{}?transport=udp",
            nobody.local_addr().unwrap()
        )),
        turn_secret: Some("never checked here".to_owned()),
        turn_ttl: Duration::from_secs(ttl),
        ..ServeArgs::default()
    })
    .await;
    let base = format!("http://{}", server.local_addr());
    let room = "browser-turn-renewal";
    let mut chromium = None;
    let (alice, bob) = alice_and_bob_in(&mut chromium, [Browser::Chromium, Browser::Firefox]).await;
    let pages = [&alice, &bob];
    let check = async {
        alice.join(&base, room, "mesh", false).await?;
        wait_for_page(&alice, "joined", |s| joined_with(s, &[])).await?;
        bob.join(&base, room, "mesh", false).await?;
        for (page, other) in [(&alice, "bob"), (&bob, "alice")] {
            wait_for_page(page, "the other's tile playing", |s| {
                tiles_playing(s, &[other])
            })
            .await?;
        }
        // Every credential "joined" gave has expired by then.
        let joined_by = gridmix::auth::unix_now();
        for page in [&alice, &bob] {
            wait_for_page(page, "renewed credentials on every connection", |s| {
                let expiries = turn_expiries(s);
                ensure!(
                    !expiries.is_empty() && expiries.iter().all(|&e| e > joined_by + ttl),
                    "TURN expiries {expiries:?}, joined by {joined_by}"
                );
                Ok(())
            })
            .await?;
        }
        for (page, other, colour) in [(&alice, "bob", BOB.0), (&bob, "alice", ALICE.0)] {
            let state =
                wait_for_page(page, "still playing", |s| tiles_playing(s, &[other])).await?;
            let id = tile_id(&state, other).ok_or_else(|| anyhow!("no {other} tile"))?;
            wait_for_page_colour(page, &id, 0.5, 0.5, colour).await?;
            wait_for_rising_frames(page).await?;
        }
        Ok(())
    };
    or_screenshots(check.await, "turn-renewal", &pages).await;
    alice.close().await;
    bob.close().await;
    server.shut_down().await;
}

/// The page's composite layout and its overlay, as the page shows them.
fn overlay_of(state: &Value) -> Vec<(String, Option<String>, bool)> {
    state["overlay"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|slot| {
            (
                slot["participant"].as_str().unwrap_or("").to_owned(),
                slot["name"].as_str().map(str::to_owned),
                slot["dominant"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// The tile of `participant` in the page's layout, as (centre x, centre y)
/// in shares of the composite.
fn tile_centre(state: &Value, participant: &str) -> Option<(f64, f64)> {
    state["layout"]["tiles"]
        .as_array()?
        .iter()
        .find(|t| t["participant"] == participant)
        .map(|t| {
            let at = |k: &str| t[k].as_f64().unwrap_or(0.0);
            (at("x") + at("width") / 2.0, at("y") + at("height") / 2.0)
        })
}

/// Picks in the page's layout picker as a person would, then lets the form
/// hear the change.
async fn pick(page: &Page, field: &str, value: Value) -> Result<()> {
    page.eval_with(
        "const form = document.querySelector('#layout-picker');
         const input = form.elements[arguments[0]];
         if (input.type === 'checkbox') input.checked = arguments[1]; else input.value = arguments[1];
         input.dispatchEvent(new Event('change', { bubbles: true }));",
        vec![Value::from(field), value],
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_mcu_page_draws_the_layout_picks_one_and_pauses_its_video_off_the_composite() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start_server(ServeArgs::default()).await;
    let base = format!("http://{}", server.local_addr());
    let api = common::recording_api::Api::new(server.local_addr());
    let room = "browser-layout";
    let loud = Bot::join(bot_config(&server, room, "loud", BOT.0, BOT.1))
        .await
        .expect("loud bot joins");
    let mut quiet_config = bot_config(&server, room, "quiet", BOB.0, BOB.1);
    quiet_config.tone_volume = 0.0;
    let quiet = Bot::join(quiet_config).await.expect("quiet bot joins");
    let (loud_id, quiet_id) = (loud.id().to_owned(), quiet.id().to_owned());
    let (_chromium, alice) = alice_alone().await;
    let pages = [&alice];

    // The overlay follows the announced grid: a box per tile, a ring on the
    // loud bot, and no names of its own, which the server draws on the
    // composite (captions are on by default).
    let check = async {
        alice.join(&base, room, "mcu", false).await?;
        wait_for_page(&alice, "the grid drawn over the composite", |s| {
            let overlay = overlay_of(s);
            let tiles: Vec<&str> = s["layout"]["tiles"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["participant"].as_str())
                .collect();
            ensure!(tiles.len() == 3, "layout tiles {tiles:?}");
            let boxes: Vec<&str> = overlay.iter().map(|(p, _, _)| p.as_str()).collect();
            ensure!(boxes == tiles, "overlay {boxes:?}, layout {tiles:?}");
            ensure!(s["layout"]["captions"] == true, "captions {}", s["layout"]);
            let names: Vec<Option<String>> = overlay.iter().map(|(_, n, _)| n.clone()).collect();
            ensure!(
                names.iter().all(Option::is_none),
                "the page draws names too: {names:?}"
            );
            ensure!(
                overlay
                    .iter()
                    .any(|(p, _, dominant)| *dominant && *p == loud_id),
                "the loud bot is not ringed: {overlay:?}"
            );
            Ok(())
        })
        .await?;
        ensure!(
            alice
                .eval("return document.querySelector('#layout-picker').hidden")
                .await?
                == false,
            "no layout picker in an MCU room"
        );
        wait_for_page(&alice, "composite playing", composite_playing).await
    };
    or_screenshots(check.await, "layout-grid", &pages).await;

    // Speaker layout with the quiet bot pinned, from the picker: everyone is
    // told, and the quiet bot's colour fills the main tile though the loud
    // one speaks.
    let check = async {
        pick(&alice, "layout", Value::from("speaker")).await?;
        pick(&alice, "pin", Value::from(quiet_id.as_str())).await?;
        loud.wait_for_state(TIMEOUT, |s| {
            s.layout.as_ref().is_some_and(|l| {
                l.layout == gridmix::protocol::LayoutKind::Speaker
                    && l.pin.as_deref() == Some(quiet_id.as_str())
            })
        })
        .await?;
        let state = wait_for_page(&alice, "the pinned layout", |s| {
            ensure!(
                s["layout"]["pin"] == quiet_id.as_str(),
                "pin {}",
                s["layout"]["pin"]
            );
            Ok(())
        })
        .await?;
        let (x, y) = tile_centre(&state, &quiet_id).ok_or_else(|| anyhow!("no quiet tile"))?;
        ensure!(y < 0.5, "the pinned tile is not the main one: {x}, {y}");
        wait_for_page_colour(&alice, "composite", x, y, BOB.0).await?;
        // Captions off from the picker (the pin stays): the page draws the
        // names itself.
        pick(&alice, "captions", Value::from(false)).await?;
        wait_for_page(&alice, "names drawn by the page", |s| {
            ensure!(s["layout"]["captions"] == false, "captions {}", s["layout"]);
            ensure!(
                s["layout"]["pin"] == quiet_id.as_str(),
                "pin {}",
                s["layout"]["pin"]
            );
            let names: Vec<Option<String>> =
                overlay_of(s).iter().map(|(_, n, _)| n.clone()).collect();
            for name in ["loud", "quiet", "alice (you)"] {
                ensure!(names.contains(&Some(name.to_owned())), "names {names:?}");
            }
            Ok(())
        })
        .await
        .map(|_| ())
    };
    or_screenshots(check.await, "layout-pinned", &pages).await;

    // For a person to look at: the speaker layout with the page's overlay.
    let _ = alice.screenshot("mcu-speaker-layout").await;

    // Off the composite, the page stops sending video; back on, it sends
    // again and its colour is in its tile.
    let only_loud = format!(
        r#"{{"layout":"custom","tiles":[{{"x":0,"y":0,"width":1,"height":1,"participant":"{loud_id}"}}]}}"#
    );
    let reply = api
        .put(&format!("/api/rooms/{room}/layout"), &only_loud)
        .await
        .expect("PUT layout");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let check = async {
        let last = std::sync::Mutex::new(None::<u64>);
        wait_for_page(&alice, "video paused, nothing sent", |s| {
            ensure!(s["videoPaused"] == true, "not paused");
            let sent = s["videoPacketsOut"].as_u64().unwrap_or(0);
            let before = last.lock().unwrap().replace(sent);
            ensure!(
                before == Some(sent),
                "video packets sent {before:?} -> {sent}"
            );
            Ok(())
        })
        .await?;
        let grid = api
            .put(&format!("/api/rooms/{room}/layout"), r#"{"layout":"grid"}"#)
            .await?;
        ensure!(grid.status == 200, "{}", grid.body);
        let paused_at = wait_for_page(&alice, "resumed", |s| {
            ensure!(s["videoPaused"] == false, "still paused");
            Ok(())
        })
        .await?["videoPacketsOut"]
            .as_u64()
            .unwrap_or(0);
        let state = wait_for_page(&alice, "sending again", |s| {
            let sent = s["videoPacketsOut"].as_u64().unwrap_or(0);
            ensure!(
                sent > paused_at,
                "video packets sent {sent}, {paused_at} when resumed"
            );
            Ok(())
        })
        .await?;
        let me = state["participant"].as_str().unwrap_or_default().to_owned();
        let (x, y) = tile_centre(&state, &me).ok_or_else(|| anyhow!("alice has no tile"))?;
        wait_for_page_colour(&alice, "composite", x, y, ALICE.0).await
    };
    or_screenshots(check.await, "layout-paused", &pages).await;

    // The quality menu: "low" brings the page the 320x180 rung of the
    // composite, with its tiles; the bots keep 720p.
    let check = async {
        alice
            .eval_with(
                "const select = document.querySelector('#quality-picker').elements.quality;
                 select.value = arguments[0];
                 select.dispatchEvent(new Event('change', { bubbles: true }));",
                vec![Value::from("low")],
            )
            .await?;
        wait_for_page(&alice, "the low rung", |s| {
            let c = &s["composite"];
            ensure!(
                c["width"] == 320 && c["height"] == 180 && c["playing"] == true,
                "composite {c}"
            );
            // The statistics table says which picture the server sends and why.
            let table = &s["statistics"];
            ensure!(
                table["Picture sent to you"] == "320x180@150"
                    && table["Last picture change"] == "asked for it",
                "statistics {table}"
            );
            Ok(())
        })
        .await?;
        let frame = loud.latest_frame(Duration::from_secs(2)).await?;
        ensure!(
            (frame.width, frame.height) == (1280, 720),
            "the loud bot gets {}x{}",
            frame.width,
            frame.height
        );
        Ok(())
    };
    or_screenshots(check.await, "quality-low", &pages).await;

    alice.close().await;
    loud.leave().await;
    quiet.leave().await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}
