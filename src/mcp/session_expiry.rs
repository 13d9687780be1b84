//! When a streamable-HTTP server has lost our session. The specification's signal is HTTP 404
//! for the session id (rmcp handles it: `SessionExpired`, a new session, the request retried
//! once). Some servers answer differently — server-everything with a 400 JSON-RPC error without
//! an id, "Bad Request: No valid session ID provided" — so an error answered *in a session*,
//! *for no request of ours* (no id, or another id), that *speaks of the session* means the same.
//! Any other error stays an error: a stateful server's session is never thrown away for it.

use rmcp::model::{JsonRpcError, RequestId};

/// The rule.
pub struct SessionExpiry;

impl SessionExpiry {
    /// Whether `error`, the answer to request `sent` (if it was a request) in a session (if
    /// `in_session`), says the session is gone.
    pub fn lost(in_session: bool, sent: Option<&RequestId>, error: &JsonRpcError) -> bool {
        let uncorrelated = sent.is_some() && error.id.as_ref() != sent;
        in_session && uncorrelated && error.error.message.to_ascii_lowercase().contains("session")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{ErrorData, JsonRpcVersion2_0, NumberOrString};

    fn error(id: Option<i64>, message: &str) -> JsonRpcError {
        JsonRpcError {
            jsonrpc: JsonRpcVersion2_0,
            id: id.map(NumberOrString::Number),
            error: ErrorData::invalid_request(message.to_owned(), None),
        }
    }

    #[test]
    fn only_session_errors_for_no_request_of_ours_end_a_session() {
        let sent = NumberOrString::Number(7);
        let gone = error(None, "Bad Request: No valid session ID provided");
        assert!(SessionExpiry::lost(true, Some(&sent), &gone));
        assert!(!SessionExpiry::lost(false, Some(&sent), &gone), "no session to lose");
        assert!(!SessionExpiry::lost(true, None, &gone), "a notification's answer");
        // Uncorrelated but about something else: a stateful server keeps its session.
        assert!(!SessionExpiry::lost(true, Some(&sent), &error(None, "Parse error")));
        assert!(!SessionExpiry::lost(true, Some(&sent), &error(Some(3), "rate limited")));
        // Our own request's error is just an error.
        assert!(!SessionExpiry::lost(true, Some(&sent), &error(Some(7), "session is busy")));
    }
}
