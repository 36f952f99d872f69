//! The bot as a DTLS stack that accepts only ECDSA, as several non-browser
//! WebRTC stacks do: a peer presenting an RSA certificate (webrtcbin's own
//! default) cannot complete a handshake with it.
//!
//! GStreamer 1.22's dtls elements set their cipher list themselves ("ALL"),
//! over anything configured, so the restriction is made where OpenSSL still
//! honours configuration: the signature algorithms, through an OpenSSL
//! configuration file named by OPENSSL_CONF. With only ECDSA signatures
//! allowed, no RSA-authenticated suite can be negotiated. It applies to the
//! whole process (every webrtcbin in it), and only if set before OpenSSL is
//! first used: call it before anything starts GStreamer.

use anyhow::{Context, Result};

const CONFIG: &str = "\
openssl_conf = gridmix_ecdsa_only

[gridmix_ecdsa_only]
ssl_conf = gridmix_ssl

[gridmix_ssl]
system_default = gridmix_ecdsa

[gridmix_ecdsa]
SignatureAlgorithms = ECDSA+SHA256:ECDSA+SHA384:ECDSA+SHA512
";

/// Makes every DTLS handshake of this process accept ECDSA only.
pub fn accept_only_ecdsa() -> Result<()> {
    let path = std::env::temp_dir().join(format!("gridmix-ecdsa-only-{}.cnf", std::process::id()));
    std::fs::write(&path, CONFIG)
        .with_context(|| format!("writing the OpenSSL configuration {}", path.display()))?;
    // SAFETY: called before the process starts any thread that reads the
    // environment (GStreamer, OpenSSL and the bot's tasks come after; the
    // callers say so).
    unsafe {
        std::env::set_var("OPENSSL_CONF", &path);
    }
    Ok(())
}
