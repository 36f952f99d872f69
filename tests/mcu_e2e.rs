//! Three bots in one MCU room over real WebSocket + WebRTC on loopback: each
//! sees everyone's colour in their tile and hears everyone's tone but its own.

mod common;

use common::*;
use gridmix::bot::Bot;
use gridmix::config::ServeArgs;
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
