//! `GET /artifacts/<key>?expires=…&signature=…`: files of the local artifact store, behind an
//! HMAC-signed, expiring link (the link is the credential, so no API key is needed). Expired or
//! tampered links are 403, keys that could escape the directory are refused; every error is an
//! OpenAI error JSON.
//!
//! Artifacts are served on the gateway's own origin, so what a browser may render is limited:
//! `X-Content-Type-Options: nosniff` always; images, audio, video and plain text inline;
//! everything else (HTML, SVG, scripts, unknown) as an attachment with
//! `Content-Security-Policy: sandbox`. The type is the one stored with the object.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::{AppState, openai_error};
use crate::artifacts::{ArtifactStore, safe_content_type, served_inline, valid_key};

fn refuse(status: StatusCode, message: &str, code: &str) -> Response {
    (status, axum::Json(openai_error(message, "invalid_request_error", code, None))).into_response()
}

/// `expires` and `signature` from the link's query (anything malformed reads as absent).
fn link_params(query: Option<&str>) -> (Option<u64>, Option<String>) {
    let (mut expires, mut signature) = (None, None);
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "expires" => expires = value.parse().ok(),
            "signature" => signature = Some(value.into_owned()),
            _ => {}
        }
    }
    (expires, signature)
}

/// Serves one artifact.
pub async fn serve(State(state): State<AppState>, uri: Uri, RawQuery(query): RawQuery) -> Response {
    let Some(store) = &state.local_store else {
        return refuse(StatusCode::NOT_FOUND, "artifacts are not served by this gateway", "not_found");
    };
    // Keys are plain `[A-Za-z0-9._-/]`: a percent-encoded key is no key of ours.
    let key = uri.path().strip_prefix("/artifacts/").unwrap_or_default();
    if !valid_key(key) || key.starts_with('.') {
        return refuse(StatusCode::FORBIDDEN, "invalid artifact key", "invalid_key");
    }
    let (Some(expires), Some(signature)) = link_params(query.as_deref()) else {
        return refuse(StatusCode::FORBIDDEN, "the link is not signed", "unsigned_link");
    };
    if let Err(e) = store.verify(key, expires, &signature) {
        let message = match e {
            crate::artifacts::LinkError::Expired => "the link has expired",
            crate::artifacts::LinkError::BadSignature => "the link signature is invalid",
        };
        return refuse(StatusCode::FORBIDDEN, message, "invalid_link");
    }
    let Ok((bytes, meta)) = store.get(key).await else {
        return refuse(StatusCode::NOT_FOUND, "no such artifact", "not_found");
    };
    let content_type = safe_content_type(&meta.content_type);
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "private, max-age=3600")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if !served_inline(content_type) {
        let name = key.rsplit('/').next().unwrap_or("artifact");
        response = response
            .header(header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\""))
            .header(header::CONTENT_SECURITY_POLICY, "sandbox");
    }
    response.body(Body::from(bytes)).unwrap_or_else(|_| {
        refuse(StatusCode::INTERNAL_SERVER_ERROR, "the artifact could not be served", "internal_error")
    })
}
