//! Clients whose DTLS accepts only ECDSA (several non-browser stacks) hold
//! calls with the server: publish connections (the server answers, and is
//! the DTLS server for the client's "actpass") and SFU subscribe
//! connections (the server offers) alike. The server once presented
//! webrtcbin's RSA certificate, and such clients failed with "no shared
//! cipher". In its own process: the restriction (bot::dtls) applies to the
//! whole process, the server's webrtcbins included, which with ECDSA
//! certificates on every side changes nothing else.

mod common;

use common::*;
use gridmix::config::ServeArgs;
use gridmix::protocol::Mode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ecdsa_only_clients_hold_mcu_and_sfu_calls() {
    // First, before GStreamer (and OpenSSL) start in this process.
    gridmix::bot::dtls::accept_only_ecdsa().expect("the OpenSSL configuration");
    let server = start_server(ServeArgs::default()).await;

    // SFU: three publishers numbering their codecs each their own way, and
    // a viewer with yet other numbers.
    let members = join_renumbered_sfu_room(&server, "ecdsa-sfu", |_| {}).await;
    wait_for_full_exchange(&members, TIMEOUT)
        .await
        .expect("every SFU track over ECDSA-only DTLS");
    assert_no_errors(&members);

    // MCU: the composite and the mix.
    let mcu = vec![
        join_member(&server, "ecdsa-mcu", "red", Mode::Mcu, SENDERS[0], false).await,
        join_member(&server, "ecdsa-mcu", "green", Mode::Mcu, SENDERS[1], false).await,
    ];
    for m in &mcu {
        wait_for_tiles(&m.bot, &[SENDERS[0].0, SENDERS[1].0], TIMEOUT)
            .await
            .expect("the composite over ECDSA-only DTLS");
    }
    wait_for_tones(&mcu[0].bot, &[SENDERS[1].1], &[SENDERS[0].1], TIMEOUT)
        .await
        .expect("the mix");
    assert_no_errors(&mcu);
    for m in members.into_iter().chain(mcu) {
        m.bot.leave().await;
    }
    server.shut_down().await;
}
