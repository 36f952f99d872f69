//! Room tokens (JWT HS256) and the HTTP API secret. Pure: no I/O, no
//! GStreamer; the time is passed in where it matters.
//!
//! A token names one room, an identity (`sub`) and an expiry (`exp`, Unix
//! seconds), and may forbid publishing (`canPublish: false`, a viewer).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Clock difference tolerated between the token's issuer and this server.
pub const LEEWAY_SECS: u64 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomClaims {
    pub room: String,
    /// The identity the token was issued to.
    pub sub: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not valid before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(
        rename = "canPublish",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub can_publish: Option<bool>,
}

/// What a valid token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub identity: String,
    pub can_publish: bool,
}

/// Why a token was refused; each is a sentence for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("This server requires a room token: join with \"token\".")]
    Missing,
    #[error("The room token has expired.")]
    Expired,
    #[error("The room token is not valid yet (its nbf is in the future).")]
    NotYetValid,
    #[error("The room token is for another room.")]
    WrongRoom,
    #[error("The room token is not valid (bad signature or format).")]
    Invalid,
}

/// Signs a token for `room` and `identity`, valid until `now + ttl`.
pub fn issue_token(
    secret: &str,
    room: &str,
    identity: &str,
    ttl: Duration,
    can_publish: bool,
    now_unix: u64,
) -> anyhow::Result<String> {
    let claims = RoomClaims {
        room: room.to_owned(),
        sub: identity.to_owned(),
        exp: now_unix.saturating_add(ttl.as_secs()),
        iat: Some(now_unix),
        nbf: None,
        can_publish: (!can_publish).then_some(false),
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// Checks a join's token against the room it asks for. Expiry and `nbf`
/// are checked against `now_unix` (with `LEEWAY_SECS`), not the library's
/// own clock; every claim is the client's number, so no sum may overflow.
pub fn verify_token(
    secret: &str,
    token: Option<&str>,
    room: &str,
    now_unix: u64,
) -> Result<Grant, TokenError> {
    let token = token.ok_or(TokenError::Missing)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = jsonwebtoken::decode::<RoomClaims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|_| TokenError::Invalid)?;
    let claims = data.claims;
    if claims.exp.saturating_add(LEEWAY_SECS) < now_unix {
        return Err(TokenError::Expired);
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf > now_unix.saturating_add(LEEWAY_SECS))
    {
        return Err(TokenError::NotYetValid);
    }
    if claims.room != room {
        return Err(TokenError::WrongRoom);
    }
    Ok(Grant {
        identity: claims.sub,
        can_publish: claims.can_publish.unwrap_or(true),
    })
}

/// The HKDF label of the /api bearer: a key of its own, so a room token's
/// secret is never sent as a header and knowing the API bearer does not let
/// anyone sign room tokens.
const API_SECRET_LABEL: &[u8] = b"gridmix/api-bearer/v1";

/// The /api bearer of a server run with `--auth-secret` and no
/// `--api-secret`: HKDF-SHA256 of the auth secret under its own label, as
/// base64url. `gridmix api-secret` prints it.
pub fn derive_api_secret(auth_secret: &str) -> String {
    use base64::Engine;
    let mut key = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(None, auth_secret.as_bytes())
        .expand(API_SECRET_LABEL, &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

/// Whether an `Authorization` header value is `Bearer <secret>`, compared
/// in constant time.
pub fn bearer_matches(header: Option<&str>, secret: &str) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), secret.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses a lifetime: `90`, `90s`, `15m`, `1h`, `2d`.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("\"{s}\" is not a duration such as 90s, 15m, 1h or 2d"))?;
    let unit_secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("\"{s}\": the unit must be s, m, h or d")),
    };
    n.checked_mul(unit_secs)
        .filter(|&secs| secs > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("\"{s}\" must be more than zero and not absurdly long"))
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cret";
    const NOW: u64 = 1_700_000_000;
    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_valid_token_admits_to_its_room_only() {
        let token = issue_token(SECRET, "standup", "alice", HOUR, true, NOW).unwrap();
        assert_eq!(
            verify_token(SECRET, Some(&token), "standup", NOW + 10),
            Ok(Grant {
                identity: "alice".into(),
                can_publish: true
            })
        );
        assert_eq!(
            verify_token(SECRET, Some(&token), "other", NOW),
            Err(TokenError::WrongRoom)
        );
    }

    #[test]
    fn expired_tampered_missing_and_foreign_tokens_are_refused() {
        let token = issue_token(SECRET, "r", "bob", HOUR, true, NOW).unwrap();
        assert_eq!(
            verify_token(SECRET, Some(&token), "r", NOW + 3600 + LEEWAY_SECS + 1),
            Err(TokenError::Expired)
        );
        // Within the leeway it still passes.
        assert!(verify_token(SECRET, Some(&token), "r", NOW + 3600 + LEEWAY_SECS).is_ok());
        assert_eq!(
            verify_token("other-secret", Some(&token), "r", NOW),
            Err(TokenError::Invalid)
        );
        // Claims swapped for another room's, signature kept.
        let other = issue_token(SECRET, "vip", "bob", HOUR, true, NOW).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let other_parts: Vec<&str> = other.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
        assert_eq!(
            verify_token(SECRET, Some(&forged), "vip", NOW),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            verify_token(SECRET, None, "r", NOW),
            Err(TokenError::Missing)
        );
        for junk in ["", "a.b.c", "not a token", "...."] {
            assert_eq!(
                verify_token(SECRET, Some(junk), "r", NOW),
                Err(TokenError::Invalid)
            );
        }
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let claims = b64.encode(format!(r#"{{"room":"r","sub":"x","exp":{}}}"#, NOW + 60));
        let token = format!("{header}.{claims}.");
        assert_eq!(
            verify_token(SECRET, Some(&token), "r", NOW),
            Err(TokenError::Invalid)
        );
    }

    fn sign(claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn huge_and_future_claims_are_refused_without_overflow() {
        // An expiry at the end of time is valid, not a wrap into the past.
        let forever = sign(&serde_json::json!({"room":"r","sub":"x","exp":u64::MAX}));
        assert!(verify_token(SECRET, Some(&forever), "r", NOW).is_ok());
        assert!(verify_token(SECRET, Some(&forever), "r", u64::MAX).is_ok());
        let later =
            sign(&serde_json::json!({"room":"r","sub":"x","exp":NOW + 7200,"nbf":NOW + 3600}));
        assert_eq!(
            verify_token(SECRET, Some(&later), "r", NOW),
            Err(TokenError::NotYetValid)
        );
        assert!(verify_token(SECRET, Some(&later), "r", NOW + 3600 - LEEWAY_SECS).is_ok());
        let never = sign(&serde_json::json!({"room":"r","sub":"x","exp":u64::MAX,"nbf":u64::MAX}));
        assert_eq!(
            verify_token(SECRET, Some(&never), "r", NOW),
            Err(TokenError::NotYetValid)
        );
        // Numbers a u64 cannot hold, negative or fractional: not a token.
        for exp in ["18446744073709551616", "-1", "1e30", "1.5", "\"1\""] {
            let claims: serde_json::Value =
                serde_json::from_str(&format!(r#"{{"room":"r","sub":"x","exp":{exp}}}"#)).unwrap();
            assert_eq!(
                verify_token(SECRET, Some(&sign(&claims)), "r", NOW),
                Err(TokenError::Invalid),
                "{exp}"
            );
        }
        assert!(issue_token(SECRET, "r", "x", Duration::from_secs(u64::MAX), true, NOW).is_ok());
    }

    proptest::proptest! {
        /// Signed claims with any numbers in them: verified or refused,
        /// never a panic, at any time of the server's clock.
        #[test]
        fn any_signed_claims_are_answered(
            exp in proptest::prelude::any::<u64>(),
            nbf in proptest::option::of(proptest::prelude::any::<u64>()),
            iat in proptest::option::of(proptest::prelude::any::<u64>()),
            room in "[a-z]{0,3}",
            now in proptest::prelude::any::<u64>(),
        ) {
            let mut claims = serde_json::json!({"room": room, "sub": "x", "exp": exp});
            if let Some(nbf) = nbf {
                claims["nbf"] = nbf.into();
            }
            if let Some(iat) = iat {
                claims["iat"] = iat.into();
            }
            let result = verify_token(SECRET, Some(&sign(&claims)), "r", now);
            if result.is_ok() {
                proptest::prop_assert!(room == "r" && exp.saturating_add(LEEWAY_SECS) >= now);
            }
        }
    }

    #[test]
    fn viewer_tokens_say_so() {
        let token = issue_token(SECRET, "r", "v", HOUR, false, NOW).unwrap();
        let grant = verify_token(SECRET, Some(&token), "r", NOW).unwrap();
        assert!(!grant.can_publish);
    }

    #[test]
    fn bearer_secret_is_checked_exactly() {
        assert!(bearer_matches(Some("Bearer s3cret"), SECRET));
        assert!(!bearer_matches(Some("Bearer s3cre"), SECRET));
        assert!(!bearer_matches(Some("Bearer s3cretX"), SECRET));
        assert!(!bearer_matches(Some("s3cret"), SECRET));
        assert!(!bearer_matches(None, SECRET));
    }

    #[test]
    fn the_api_secret_is_its_own_key() {
        let api = derive_api_secret(SECRET);
        assert_eq!(
            api,
            derive_api_secret(SECRET),
            "the same for the same secret"
        );
        assert_ne!(api, derive_api_secret("another"));
        assert_ne!(api, SECRET);
        assert_eq!(api.len(), 43, "32 bytes as base64url: {api}");
        // It cannot sign room tokens.
        let token = issue_token(&api, "r", "x", HOUR, true, NOW).unwrap();
        assert_eq!(
            verify_token(SECRET, Some(&token), "r", NOW),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn lifetimes_parse() {
        assert_eq!(parse_ttl("1h"), Ok(HOUR));
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("2d"), Ok(Duration::from_secs(172800)));
        for bad in ["", "h", "1w", "0s", "-1h", "99999999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
