//! `GET /artifacts/<key>?expires=…&signature=…`: files of the local artifact store, behind an
//! HMAC-signed, expiring link (the link is the credential, so no API key is needed). Expired or
//! tampered links are 403, keys that could escape the directory are refused.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{AppState, openai_error};
use crate::artifacts::{mime_of, valid_key};

/// The link's query.
#[derive(Deserialize)]
pub struct LinkQuery {
    expires: Option<u64>,
    signature: Option<String>,
}

fn refuse(status: StatusCode, message: &str, code: &str) -> Response {
    (status, axum::Json(openai_error(message, "invalid_request_error", code, None))).into_response()
}

/// Serves one artifact.
pub async fn serve(State(state): State<AppState>, Path(key): Path<String>, Query(q): Query<LinkQuery>) -> Response {
    let Some(store) = &state.local_store else {
        return refuse(StatusCode::NOT_FOUND, "artifacts are not served by this gateway", "not_found");
    };
    if !valid_key(&key) || key.starts_with('.') {
        return refuse(StatusCode::FORBIDDEN, "invalid artifact key", "invalid_key");
    }
    let (Some(expires), Some(signature)) = (q.expires, q.signature) else {
        return refuse(StatusCode::FORBIDDEN, "the link is not signed", "unsigned_link");
    };
    if let Err(e) = store.verify(&key, expires, &signature) {
        let message = match e {
            crate::artifacts::LinkError::Expired => "the link has expired",
            crate::artifacts::LinkError::BadSignature => "the link signature is invalid",
        };
        return refuse(StatusCode::FORBIDDEN, message, "invalid_link");
    }
    match store.read(&key).await {
        Ok(bytes) => Response::builder()
            .header(header::CONTENT_TYPE, mime_of(&key))
            .header(header::CACHE_CONTROL, "private, max-age=3600")
            .header("x-content-type-options", "nosniff")
            .body(Body::from(bytes))
            .unwrap_or_default(),
        Err(_) => refuse(StatusCode::NOT_FOUND, "no such artifact", "not_found"),
    }
}
