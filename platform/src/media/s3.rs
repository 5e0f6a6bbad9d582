//! Job outputs in an S3 bucket (AWS, or an S3-compatible server such as SeaweedFS), fetched by
//! presigned GET URLs.
//!
//! What it promises:
//! - once `connect` returns, the bucket exists: it is created if missing, and several processes
//!   connecting at once to a missing bucket all succeed;
//! - an object is stored whole, with its content type, or not at all: anything larger than one
//!   part goes up as a multipart upload, read part by part from its source and aborted on any
//!   error, so a failed upload never leaves an object behind;
//! - a presigned URL opens its own key only, until its expiry; S3 answers 403 to a URL whose path,
//!   expiry or signature was changed, and to an expired one;
//! - the secret key appears in no `Debug` output and no error message.
//!
//! An upload whose future is dropped midway cannot be aborted; on AWS, give the bucket an
//! `AbortIncompleteMultipartUpload` lifecycle rule so such parts do not accumulate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation, SharedHttpClient,
};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{MediaError, MediaStore, SignedUrl, check_key};
use crate::secret::Secret;

const MIB: usize = 1024 * 1024;
/// S3 refuses parts smaller than this, except the last.
const MIN_PART_SIZE: usize = 5 * MIB;
const MAX_PART_SIZE: usize = 5 * 1024 * MIB;
const MAX_PARTS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct S3Config {
    /// The server's address (`http://127.0.0.1:8333`) for an S3-compatible store; `None` for AWS.
    pub endpoint: Option<String>,
    /// The address presigned URLs carry, when clients reach S3 elsewhere than the services do
    /// (services at `http://seaweedfs:8333`, browsers at `https://media.example.com`).
    pub public_endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    pub access_key: Secret,
    pub secret_key: Secret,
    /// The bucket in the path instead of the host name; S3-compatible servers need it.
    pub path_style: bool,
    /// Objects up to this size go up in one request, larger ones in parts of this size.
    /// Between 5 MiB (S3's smallest part) and 5 GiB.
    pub part_size: usize,
}

impl S3Config {
    pub const DEFAULT_PART_SIZE: usize = 8 * MIB;

    fn validate(&self) -> Result<(), MediaError> {
        let invalid = |why: String| Err(MediaError::Broken(format!("invalid S3 configuration: {why}")));
        if self.region.is_empty() {
            return invalid("the region is empty".into());
        }
        if !is_bucket_name(&self.bucket) {
            return invalid(format!("{:?} is not a bucket name (3-63 of a-z, 0-9, '.', '-')", self.bucket));
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return invalid(format!("part size {} is outside 5 MiB..=5 GiB", self.part_size));
        }
        Ok(())
    }
}

fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

pub struct S3MediaStore {
    client: Client,
    /// Signs URLs for `public_endpoint`; the same client as `client` when there is none.
    presigner: Client,
    bucket: String,
    part_size: usize,
}

impl S3MediaStore {
    /// Checks the configuration and makes sure the bucket exists.
    pub async fn connect(config: S3Config) -> Result<Self, MediaError> {
        config.validate()?;
        let http =
            aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
        let client = build_client(&config, config.endpoint.as_deref(), http.clone());
        let presigner = match &config.public_endpoint {
            Some(public) => build_client(&config, Some(public), http),
            None => client.clone(),
        };
        let store = Self { client, presigner, bucket: config.bucket, part_size: config.part_size };
        store.ensure_bucket(&config.region).await?;
        Ok(store)
    }

    async fn ensure_bucket(&self, region: &str) -> Result<(), MediaError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => return Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => {}
            Err(e) => return Err(storage(format!("checking bucket {}", self.bucket), e)),
        }
        let mut create = self.client.create_bucket().bucket(&self.bucket);
        // us-east-1 is S3's default location and refuses to be named as a constraint.
        if region != "us-east-1" {
            let location = CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build();
            create = create.create_bucket_configuration(location);
        }
        let Err(e) = create.send().await else { return Ok(()) };
        if e.as_service_error().is_some_and(|e| e.is_bucket_already_owned_by_you()) {
            return Ok(());
        }
        // Another process may have created it in between; usable is all that matters.
        if self.client.head_bucket().bucket(&self.bucket).send().await.is_ok() {
            return Ok(());
        }
        Err(storage(format!("creating bucket {}", self.bucket), e))
    }

    /// Stores what `reader` yields under `key`, holding at most two parts in memory, and returns
    /// its size. Use it for outputs too large to hold; `put` is the same for bytes in memory.
    pub async fn put_reader<R>(&self, key: &str, mut reader: R, content_type: &str) -> Result<u64, MediaError>
    where
        R: AsyncRead + Unpin + Send,
    {
        check_key(key)?;
        let first = read_part(&mut reader, self.part_size).await?;
        let second =
            if first.len() < self.part_size { Bytes::new() } else { read_part(&mut reader, self.part_size).await? };
        if second.is_empty() {
            let size = first.len() as u64;
            self.put_object(key, first, content_type).await?;
            return Ok(size);
        }
        let upload = self.start_upload(key, content_type).await?;
        let uploaded = upload.send_all(first, second, &mut reader).await;
        if uploaded.is_err() {
            upload.abort().await;
        }
        uploaded
    }

    async fn put_object(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), MediaError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| storage(format!("putting {key}"), e))?;
        Ok(())
    }

    async fn start_upload<'a>(&'a self, key: &'a str, content_type: &str) -> Result<Upload<'a>, MediaError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| storage(format!("starting the upload of {key}"), e))?;
        let id = created
            .upload_id
            .ok_or_else(|| MediaError::Broken(format!("starting the upload of {key}: no upload id in the answer")))?;
        Ok(Upload { store: self, key, id })
    }
}

/// A multipart upload in progress.
struct Upload<'a> {
    store: &'a S3MediaStore,
    key: &'a str,
    id: String,
}

impl Upload<'_> {
    /// Sends `first`, `second`, then the rest of `reader` as parts, and completes the upload.
    async fn send_all<R>(&self, first: Bytes, second: Bytes, reader: &mut R) -> Result<u64, MediaError>
    where
        R: AsyncRead + Unpin + Send,
    {
        let mut size = first.len() as u64;
        let mut parts = vec![self.send_part(1, first).await?];
        let mut part = second;
        while !part.is_empty() {
            if parts.len() == MAX_PARTS {
                return Err(MediaError::Broken(format!("{} needs more than {MAX_PARTS} parts", self.key)));
            }
            size += part.len() as u64;
            parts.push(self.send_part(parts.len() as i32 + 1, part).await?);
            part = read_part(reader, self.store.part_size).await?;
        }
        self.complete(parts).await?;
        Ok(size)
    }

    async fn send_part(&self, number: i32, bytes: Bytes) -> Result<CompletedPart, MediaError> {
        let sent = self
            .store
            .client
            .upload_part()
            .bucket(&self.store.bucket)
            .key(self.key)
            .upload_id(&self.id)
            .part_number(number)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| storage(format!("uploading part {number} of {}", self.key), e))?;
        Ok(CompletedPart::builder().part_number(number).set_e_tag(sent.e_tag).build())
    }

    async fn complete(&self, parts: Vec<CompletedPart>) -> Result<(), MediaError> {
        self.store
            .client
            .complete_multipart_upload()
            .bucket(&self.store.bucket)
            .key(self.key)
            .upload_id(&self.id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| storage(format!("completing the upload of {}", self.key), e))?;
        Ok(())
    }

    /// Frees the parts sent so far; a failure only leaves them to the bucket's lifecycle rules.
    async fn abort(&self) {
        let aborted = self
            .store
            .client
            .abort_multipart_upload()
            .bucket(&self.store.bucket)
            .key(self.key)
            .upload_id(&self.id)
            .send()
            .await;
        if let Err(e) = aborted {
            tracing::warn!(key = %self.key, error = %DisplayErrorContext(e), "aborting a failed multipart upload");
        }
    }
}

#[async_trait]
impl MediaStore for S3MediaStore {
    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), MediaError> {
        check_key(key)?;
        if bytes.len() <= self.part_size {
            return self.put_object(key, bytes, content_type).await;
        }
        self.put_reader(key, &bytes[..], content_type).await.map(drop)
    }

    async fn get(&self, key: &str) -> Result<Bytes, MediaError> {
        check_key(key)?;
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| storage(format!("reading {key}"), e))?;
        let body = object.body.collect().await.map_err(|e| storage(format!("reading {key}"), e))?;
        Ok(body.into_bytes())
    }

    async fn signed_url(&self, key: &str, ttl: Duration) -> Result<SignedUrl, MediaError> {
        check_key(key)?;
        // Whole seconds, as X-Amz-Date and X-Amz-Expires carry them, so `expires_at_millis` is exact.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let ttl = ttl.as_secs().max(1);
        let presigning = PresigningConfig::builder()
            .start_time(UNIX_EPOCH + Duration::from_secs(now))
            .expires_in(Duration::from_secs(ttl))
            .build()
            .map_err(|e| storage(format!("presigning {key} for {ttl} s"), e))?;
        let request = self
            .presigner
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning)
            .await
            .map_err(|e| storage(format!("presigning {key}"), e))?;
        Ok(SignedUrl { url: request.uri().to_string(), expires_at_millis: ((now + ttl) * 1000) as i64 })
    }
}

fn build_client(config: &S3Config, endpoint: Option<&str>, http: SharedHttpClient) -> Client {
    let credentials =
        Credentials::new(config.access_key.expose(), config.secret_key.expose(), None, None, "cutx-config");
    let mut builder = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new(config.region.clone()))
        .credentials_provider(credentials)
        .force_path_style(config.path_style)
        // S3-compatible servers do not all understand the newer default checksum headers.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    Client::from_conf(builder.build())
}

/// Reads up to `size` bytes; fewer only at the end of `reader`.
async fn read_part<R: AsyncRead + Unpin>(reader: &mut R, size: usize) -> Result<Bytes, MediaError> {
    let mut part = Vec::new();
    reader
        .take(size as u64)
        .read_to_end(&mut part)
        .await
        .map_err(|e| MediaError::during("reading the object to upload", e))?;
    Ok(Bytes::from(part))
}

/// The SDK's error, with the whole of its context (the service's code and message) as the cause:
/// its own `Display` says only "service error".
fn storage(doing: String, error: impl std::error::Error) -> MediaError {
    MediaError::during(doing, DisplayErrorContext(error).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_s3_bucket_names_are_accepted() {
        let table = [
            ("cutx-media", true),
            ("a.b-c", true),
            ("abc", true),
            ("ab", false),
            (&*"a".repeat(64), false),
            ("Cutx", false),
            ("-cutx", false),
            ("cutx-", false),
            ("cutx_media", false),
            ("cutx/media", false),
        ];
        for (name, ok) in table {
            assert_eq!(is_bucket_name(name), ok, "{name:?}");
        }
    }

    #[test]
    fn a_part_size_below_s3_minimum_is_refused() {
        let config = |part_size| S3Config {
            endpoint: None,
            public_endpoint: None,
            region: "us-east-1".into(),
            bucket: "cutx-media".into(),
            access_key: Secret::new("key".into()),
            secret_key: Secret::new("very-secret".into()),
            path_style: true,
            part_size,
        };
        assert!(config(MIN_PART_SIZE - 1).validate().is_err());
        assert!(config(MIN_PART_SIZE).validate().is_ok());
        assert!(!format!("{:?}", config(MIN_PART_SIZE)).contains("very-secret"));
    }
}
