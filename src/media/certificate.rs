//! The DTLS certificate every gridmix webrtcbin presents: ECDSA P-256, made
//! once, as browsers' are.
//!
//! webrtcbin 1.22 makes its own RSA 2048 certificate, which DTLS stacks that
//! offer only ECDSA cipher suites refuse ("no shared cipher"). It takes
//! another through the `pem` of each `dtlssrtpdec` it creates, which must be
//! set the moment that element is added (before its connection starts), so
//! a `deep-element-added` handler sets it. 1.22 then writes a wrong
//! `a=fingerprint` (a hash of the certificate and the key together), so the
//! fingerprint of the SDP webrtcbin makes is replaced with the right one
//! before it is used.

use anyhow::{Context, Result};
use gst::prelude::*;

#[derive(Debug)]
pub struct DtlsCertificate {
    /// Certificate then PKCS#8 private key, as dtlssrtpdec's `pem` takes it.
    pem: String,
    /// `sha-256 AB:CD:...`: the value of `a=fingerprint`.
    fingerprint: String,
}

impl DtlsCertificate {
    /// A new self-signed ECDSA P-256 certificate.
    pub fn generate() -> Result<DtlsCertificate> {
        let made = rcgen::generate_simple_self_signed(vec!["gridmix".to_owned()])
            .context("making the DTLS certificate")?;
        let digest =
            gst::glib::compute_checksum_for_data(gst::glib::ChecksumType::Sha256, made.cert.der())
                .context("hashing the DTLS certificate")?;
        Ok(DtlsCertificate {
            pem: format!("{}{}", made.cert.pem(), made.signing_key.serialize_pem()),
            fingerprint: format!("sha-256 {}", colon_hex(&digest)),
        })
    }

    /// Makes `webrtc` present this certificate on every DTLS transport it
    /// creates.
    pub fn apply_to(&self, webrtc: &gst::Element) {
        let Some(bin) = webrtc.downcast_ref::<gst::Bin>() else {
            return;
        };
        let pem = self.pem.clone();
        // Runs on webrtcbin's own thread with its lock held: set the
        // property and nothing else.
        bin.connect_deep_element_added(move |_, _, element| {
            if element.factory().is_some_and(|f| f.name() == "dtlssrtpdec") {
                element.set_property("pem", &pem);
            }
        });
    }

    /// The SDP with every `a=fingerprint` line saying this certificate's.
    pub fn fix_fingerprints(&self, sdp: &str) -> String {
        replace_fingerprints(sdp, &self.fingerprint)
    }
}

/// `abcd01...` as `AB:CD:01:...`.
fn colon_hex(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

/// Replaces the value of every `a=fingerprint:` line. Pure.
fn replace_fingerprints(sdp: &str, fingerprint: &str) -> String {
    sdp.lines()
        .map(|line| {
            if line.trim_end().starts_with("a=fingerprint:") {
                format!("a=fingerprint:{fingerprint}\r\n")
            } else {
                format!("{}\r\n", line.trim_end_matches('\r'))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_upper_case_pairs_joined_by_colons() {
        assert_eq!(colon_hex("0a1bff"), "0A:1B:FF");
    }

    #[test]
    fn every_fingerprint_line_is_replaced_and_nothing_else() {
        let sdp = "v=0\r\na=fingerprint:sha-256 00:11\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
a=fingerprint:sha-256 22:33\r\na=mid:0\r\n";
        assert_eq!(
            replace_fingerprints(sdp, "sha-256 AA:BB"),
            "v=0\r\na=fingerprint:sha-256 AA:BB\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
a=fingerprint:sha-256 AA:BB\r\na=mid:0\r\n"
        );
    }

    #[test]
    fn a_generated_certificate_is_ecdsa_and_its_fingerprint_is_its_own() {
        let one = DtlsCertificate::generate().unwrap();
        let other = DtlsCertificate::generate().unwrap();
        assert!(one.pem.contains("BEGIN CERTIFICATE") && one.pem.contains("BEGIN PRIVATE KEY"));
        // 32 bytes of SHA-256, as 32 colon-separated pairs.
        let hex = one.fingerprint.strip_prefix("sha-256 ").unwrap();
        assert_eq!(hex.split(':').count(), 32, "{hex}");
        assert_ne!(one.fingerprint, other.fingerprint);
        // The key is P-256 (the PKCS#8 names the prime256v1 curve's OID).
        let key =
            rcgen::KeyPair::from_pem(&one.pem[one.pem.find("-----BEGIN PRIVATE KEY").unwrap()..])
                .unwrap();
        assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
    }
}
