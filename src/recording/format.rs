//! Recording formats and the body of `POST /api/rooms/{room}/recordings`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a recording writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// VP8 + Opus in WebM (Matroska), written live so a cut-off file plays.
    #[default]
    Webm,
    /// H.264 + AAC in fragmented MP4 (a fragment per second).
    Mp4,
    /// H.264 + AAC in MPEG-TS segments with a live playlist.
    Hls,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Webm, Format::Mp4, Format::Hls];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Webm => "webm",
            Format::Mp4 => "mp4",
            Format::Hls => "hls",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a start request was refused: a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    pub code: &'static str,
    pub message: String,
}

/// Reads the optional JSON body of a start request: empty (or only
/// whitespace) means the default format; otherwise an object whose optional
/// "format" is one of the formats. Unknown fields are refused so a typo
/// ("fromat") does not silently record the default.
pub fn parse_start_request(body: &[u8]) -> Result<Format, RequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Format::default());
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| RequestError {
        code: "bad-json",
        message: format!("The request body is not valid JSON: {e}."),
    })?;
    let Some(object) = value.as_object() else {
        return Err(RequestError {
            code: "bad-json",
            message: "The request body must be a JSON object, such as {\"format\":\"webm\"}."
                .into(),
        });
    };
    if let Some(unknown) = object.keys().find(|k| k.as_str() != "format") {
        let unknown: String = unknown.chars().take(40).collect();
        return Err(RequestError {
            code: "bad-request",
            message: format!("Unknown field \"{unknown}\": only \"format\" may be given."),
        });
    }
    match object.get("format") {
        None | Some(serde_json::Value::Null) => Ok(Format::default()),
        Some(serde_json::Value::String(s)) => Format::parse(s).ok_or_else(|| RequestError {
            code: "bad-format",
            message: format!(
                "Unknown format \"{}\": use \"webm\", \"mp4\" or \"hls\".",
                s.chars().take(40).collect::<String>()
            ),
        }),
        Some(_) => Err(RequestError {
            code: "bad-format",
            message: "\"format\" must be a string: \"webm\", \"mp4\" or \"hls\".".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_body_or_no_format_means_webm() {
        for body in ["", "  \n", "{}", r#"{"format":null}"#] {
            assert_eq!(
                parse_start_request(body.as_bytes()),
                Ok(Format::Webm),
                "{body:?}"
            );
        }
    }

    #[test]
    fn each_format_parses() {
        for f in Format::ALL {
            let body = format!(r#"{{"format":"{f}"}}"#);
            assert_eq!(parse_start_request(body.as_bytes()), Ok(f));
        }
    }

    #[test]
    fn bad_bodies_get_distinct_codes() {
        let code = |b: &str| parse_start_request(b.as_bytes()).unwrap_err().code;
        assert_eq!(code("{nope"), "bad-json");
        assert_eq!(code("[1]"), "bad-json");
        assert_eq!(code("\"webm\""), "bad-json");
        assert_eq!(code(r#"{"format":"avi"}"#), "bad-format");
        assert_eq!(code(r#"{"format":"WEBM"}"#), "bad-format");
        assert_eq!(code(r#"{"format":3}"#), "bad-format");
        assert_eq!(code(r#"{"fromat":"mp4"}"#), "bad-request");
        let long = format!(r#"{{"format":"{}"}}"#, "x".repeat(10_000));
        assert!(
            parse_start_request(long.as_bytes())
                .unwrap_err()
                .message
                .len()
                < 200
        );
    }
}
