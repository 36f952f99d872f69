//! Why a recording request failed: a stable code for programs, a sentence
//! for people, and the HTTP status it answers with.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingErrorCode {
    /// The request body is not JSON or not a JSON object.
    BadJson,
    /// The body has fields other than "format".
    BadRequest,
    /// "format" is not "webm", "mp4" or "hls".
    BadFormat,
    /// The room id in the URL is not a valid room id.
    BadName,
    /// No open room (nor a closed one with recordings) has that id.
    UnknownRoom,
    /// The room has no recording with that id.
    UnknownRecording,
    /// A mesh room: its media never reaches the server.
    NotRecordable,
    /// The room already runs as many recordings as a room may.
    TooManyRecordings,
    /// The record directory or file cannot be written.
    StorageError,
    /// The server is shutting down.
    ShuttingDown,
    /// The server failed while handling a valid request.
    Internal,
}

impl RecordingErrorCode {
    pub const ALL: [RecordingErrorCode; 11] = [
        RecordingErrorCode::BadJson,
        RecordingErrorCode::BadRequest,
        RecordingErrorCode::BadFormat,
        RecordingErrorCode::BadName,
        RecordingErrorCode::UnknownRoom,
        RecordingErrorCode::UnknownRecording,
        RecordingErrorCode::NotRecordable,
        RecordingErrorCode::TooManyRecordings,
        RecordingErrorCode::StorageError,
        RecordingErrorCode::ShuttingDown,
        RecordingErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordingErrorCode::BadJson => "bad-json",
            RecordingErrorCode::BadRequest => "bad-request",
            RecordingErrorCode::BadFormat => "bad-format",
            RecordingErrorCode::BadName => "bad-name",
            RecordingErrorCode::UnknownRoom => "unknown-room",
            RecordingErrorCode::UnknownRecording => "unknown-recording",
            RecordingErrorCode::NotRecordable => "not-recordable",
            RecordingErrorCode::TooManyRecordings => "too-many-recordings",
            RecordingErrorCode::StorageError => "storage-error",
            RecordingErrorCode::ShuttingDown => "shutting-down",
            RecordingErrorCode::Internal => "internal",
        }
    }

    pub fn parse(s: &str) -> Option<RecordingErrorCode> {
        RecordingErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
    }

    pub fn http_status(self) -> u16 {
        match self {
            RecordingErrorCode::BadJson
            | RecordingErrorCode::BadRequest
            | RecordingErrorCode::BadFormat
            | RecordingErrorCode::BadName => 400,
            RecordingErrorCode::UnknownRoom | RecordingErrorCode::UnknownRecording => 404,
            RecordingErrorCode::NotRecordable | RecordingErrorCode::TooManyRecordings => 409,
            RecordingErrorCode::StorageError | RecordingErrorCode::Internal => 500,
            RecordingErrorCode::ShuttingDown => 503,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingError {
    pub code: RecordingErrorCode,
    pub message: String,
}

impl RecordingError {
    pub fn new(code: RecordingErrorCode, message: impl Into<String>) -> Self {
        RecordingError {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for RecordingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for RecordingError {}

impl From<crate::recording::format::RequestError> for RecordingError {
    fn from(e: crate::recording::format::RequestError) -> Self {
        RecordingError {
            code: RecordingErrorCode::parse(e.code).unwrap_or(RecordingErrorCode::BadRequest),
            message: e.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_round_trip() {
        for code in RecordingErrorCode::ALL {
            assert_eq!(RecordingErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(RecordingErrorCode::parse("teapot"), None);
        let mut names: Vec<&str> = RecordingErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), RecordingErrorCode::ALL.len());
    }

    #[test]
    fn each_code_answers_with_the_status_the_readme_gives_it() {
        // README, "Recording", the API's error table.
        let table = [
            ("bad-json", 400),
            ("bad-request", 400),
            ("bad-format", 400),
            ("bad-name", 400),
            ("unknown-room", 404),
            ("unknown-recording", 404),
            ("not-recordable", 409),
            ("too-many-recordings", 409),
            ("storage-error", 500),
            ("shutting-down", 503),
            ("internal", 500),
        ];
        assert_eq!(table.len(), RecordingErrorCode::ALL.len());
        for (name, status) in table {
            let code = RecordingErrorCode::parse(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(code.http_status(), status, "{name}");
        }
    }

    #[test]
    fn every_request_error_maps_to_its_own_code() {
        for body in ["{", r#"{"format":"avi"}"#, r#"{"x":1}"#] {
            let e = crate::recording::parse_start_request(body.as_bytes()).unwrap_err();
            let code = e.code;
            assert_eq!(RecordingError::from(e).code.as_str(), code);
        }
    }
}
