//! Signed, expiring recording URLs. Pure.
//!
//! A `<video>` element or an HLS player cannot send a bearer header, so on a
//! server with auth a recording is reached through a URL that carries its
//! own permission: `/recordings/s/<expires>/<signature>/<entry>/...`, the
//! signature an HMAC-SHA256 of the entry (a recording's file, or its HLS
//! folder) and the expiry. The permission sits in the path, not the query,
//! so the relative segment URLs of an HLS playlist inherit it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Where signed URLs start.
pub const SIGNED_PREFIX: &str = "/recordings/s/";
const PLAIN_PREFIX: &str = "/recordings/";
/// The HKDF label of the signing key: not the token secret, not the API's.
const KEY_LABEL: &[u8] = b"gridmix/recording-url/v1";

/// Why a signed URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not `<expires>/<signature>/<entry>...`.
    Malformed,
    Expired,
    /// The signature is not this server's for that entry and expiry.
    BadSignature,
}

#[derive(Clone)]
pub struct UrlSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(..)")
    }
}

impl UrlSigner {
    /// The signer of a server run with `auth_secret`.
    pub fn from_auth_secret(auth_secret: &str) -> UrlSigner {
        let mut key = [0u8; 32];
        hkdf::Hkdf::<Sha256>::new(None, auth_secret.as_bytes())
            .expand(KEY_LABEL, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        UrlSigner { key }
    }

    fn signature(&self, entry: &str, expires: u64) -> String {
        use base64::Engine;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(entry.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// `/recordings/<entry>/...` as a URL valid until `expires` (Unix
    /// seconds). Anything else is returned as it was.
    pub fn sign(&self, url: &str, expires: u64) -> String {
        let Some(rest) = url.strip_prefix(PLAIN_PREFIX) else {
            return url.to_owned();
        };
        let entry = rest.split('/').next().unwrap_or_default();
        format!(
            "{SIGNED_PREFIX}{expires}/{}/{rest}",
            self.signature(entry, expires)
        )
    }

    /// Checks what follows `/recordings/s/` at `now`; the path under the
    /// record directory it allows (`<entry>/...`).
    pub fn verify<'a>(&self, after_prefix: &'a str, now: u64) -> Result<&'a str, Refusal> {
        let mut parts = after_prefix.splitn(3, '/');
        let (Some(expires), Some(signature), Some(path)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::Malformed);
        };
        let expires: u64 = expires.parse().map_err(|_| Refusal::Malformed)?;
        let entry = path.split('/').next().unwrap_or_default();
        if entry.is_empty() {
            return Err(Refusal::Malformed);
        }
        let expected = self.signature(entry, expires);
        let same = expected.len() == signature.len()
            && expected
                .bytes()
                .zip(signature.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(Refusal::BadSignature);
        }
        if expires < now {
            return Err(Refusal::Expired);
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn after_prefix(url: &str) -> &str {
        url.strip_prefix(SIGNED_PREFIX).expect("a signed URL")
    }

    #[test]
    fn a_signed_url_opens_its_entry_until_it_expires() {
        let signer = UrlSigner::from_auth_secret("s3cret");
        let url = signer.sign("/recordings/standup-1.webm", NOW + 60);
        assert!(
            url.starts_with(&format!("{SIGNED_PREFIX}{}/", NOW + 60)),
            "{url}"
        );
        assert_eq!(signer.verify(after_prefix(&url), NOW), Ok("standup-1.webm"));
        assert_eq!(
            signer.verify(after_prefix(&url), NOW + 60),
            Ok("standup-1.webm")
        );
        assert_eq!(
            signer.verify(after_prefix(&url), NOW + 61),
            Err(Refusal::Expired)
        );
    }

    #[test]
    fn an_hls_signature_covers_the_folder_and_its_segments() {
        let signer = UrlSigner::from_auth_secret("s3cret");
        let playlist = signer.sign("/recordings/standup-1/index.m3u8", NOW + 60);
        // What a player makes of the playlist's relative "segment00001.ts".
        let segment = playlist.replace("index.m3u8", "segment00001.ts");
        assert_eq!(
            signer.verify(after_prefix(&segment), NOW),
            Ok("standup-1/segment00001.ts")
        );
    }

    #[test]
    fn forged_swapped_and_foreign_urls_are_refused() {
        let signer = UrlSigner::from_auth_secret("s3cret");
        let url = signer.sign("/recordings/standup-1.webm", NOW + 60);
        let other_entry = url.replace("standup-1.webm", "standup-2.webm");
        assert_eq!(
            signer.verify(after_prefix(&other_entry), NOW),
            Err(Refusal::BadSignature)
        );
        let later = url.replace(&(NOW + 60).to_string(), &(NOW + 6000).to_string());
        assert_eq!(
            signer.verify(after_prefix(&later), NOW),
            Err(Refusal::BadSignature)
        );
        let foreign = UrlSigner::from_auth_secret("another");
        assert_eq!(
            foreign.verify(after_prefix(&url), NOW),
            Err(Refusal::BadSignature)
        );
        for malformed in [
            "",
            "123",
            "123/sig",
            "123/sig/",
            "notanumber/sig/a.webm",
            "18446744073709551616/sig/a.webm",
        ] {
            assert_eq!(
                signer.verify(malformed, NOW),
                Err(Refusal::Malformed),
                "{malformed}"
            );
        }
        // Paths that are not recordings are not signed.
        assert_eq!(signer.sign("/api/rooms", NOW), "/api/rooms");
    }
}
