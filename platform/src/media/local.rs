//! The embedded default's media store: files under a folder, served by the gateway at
//! `/media/<key>` only with a valid, unexpired signature.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

use super::{MediaError, MediaStore, SignedUrl, UrlSigner, check_key, content_type_of};

pub struct LocalMediaStore {
    root: PathBuf,
    public_base: String,
    signer: UrlSigner,
}

impl LocalMediaStore {
    /// Stores files under `root`; URLs start with `public_base` (the gateway's address).
    pub fn new(root: PathBuf, public_base: String, signer: UrlSigner) -> Self {
        Self { root, public_base: public_base.trim_end_matches('/').to_string(), signer }
    }

    /// The gateway route that serves signed downloads.
    pub fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new().route("/media/{*key}", axum::routing::get(download)).with_state(self)
    }
}

#[async_trait]
impl MediaStore for LocalMediaStore {
    async fn put(&self, key: &str, bytes: Bytes, _content_type: &str) -> Result<(), MediaError> {
        check_key(key)?;
        let path = self.root.join(key);
        let storage = |e: std::io::Error| MediaError::during(format!("writing {key}"), e);
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(storage)?;
        }
        // Write then rename, so a reader never sees half a file.
        let partial = path.with_extension("partial");
        tokio::fs::write(&partial, &bytes).await.map_err(storage)?;
        tokio::fs::rename(&partial, &path).await.map_err(storage)
    }

    async fn get(&self, key: &str) -> Result<Bytes, MediaError> {
        check_key(key)?;
        let bytes =
            tokio::fs::read(self.root.join(key)).await.map_err(|e| MediaError::during(format!("reading {key}"), e))?;
        Ok(Bytes::from(bytes))
    }

    async fn signed_url(&self, key: &str, ttl: Duration) -> Result<SignedUrl, MediaError> {
        check_key(key)?;
        let expires = chrono::Utc::now().timestamp() + ttl.as_secs().max(1) as i64;
        Ok(SignedUrl {
            url: format!("{}{}", self.public_base, self.signer.path_and_query(key, expires)),
            expires_at_millis: expires * 1000,
        })
    }
}

#[derive(Deserialize)]
struct SignedQuery {
    expires: i64,
    signature: String,
}

async fn download(
    State(store): State<Arc<LocalMediaStore>>,
    Path(key): Path<String>,
    query: Result<Query<SignedQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let refuse = |status: StatusCode, message: &str| (status, message.to_string()).into_response();
    if check_key(&key).is_err() {
        return refuse(StatusCode::NOT_FOUND, "not found");
    }
    let Ok(Query(q)) = query else {
        return refuse(StatusCode::FORBIDDEN, "a signed link is required");
    };
    if let Err(e) = store.signer.verify(&key, q.expires, &q.signature, chrono::Utc::now().timestamp()) {
        return refuse(StatusCode::FORBIDDEN, &e.to_string());
    }
    match tokio::fs::read(store.root.join(&key)).await {
        Ok(bytes) => {
            ([(header::CONTENT_TYPE, content_type_of(&key)), (header::CACHE_CONTROL, "private, max-age=300")], bytes)
                .into_response()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => refuse(StatusCode::NOT_FOUND, "not found"),
        Err(e) => {
            tracing::error!(error = %e, %key, "reading media");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}
