//! `S3MediaStore` against a real S3 server (SeaweedFS in the test script), reached through the
//! `CUTX_TEST_S3_*` variables. Without them each test says "skipped" and passes, unless
//! `CUTX_REQUIRE_TOOLS=1`. Every test works in a bucket of its own.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cutx_platform::media::{MediaError, MediaStore, S3Config, S3MediaStore};
use cutx_platform::secret::Secret;
use reqwest::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

const MIB: usize = 1024 * 1024;

/// A configuration for a fresh bucket on the test server, or `None` when there is none.
fn test_config(test: &str) -> Option<S3Config> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let Some(endpoint) = var("CUTX_TEST_S3_ENDPOINT") else {
        if var("CUTX_REQUIRE_TOOLS").as_deref() == Some("1") {
            panic!("CUTX_REQUIRE_TOOLS=1 but CUTX_TEST_S3_ENDPOINT is unset: start SeaweedFS (scripts/infra.sh)");
        }
        eprintln!("{test}: skipped (CUTX_TEST_S3_ENDPOINT is unset)");
        return None;
    };
    let required = |name: &str| var(name).unwrap_or_else(|| panic!("{name} is unset"));
    Some(S3Config {
        endpoint: Some(endpoint),
        public_endpoint: None,
        region: var("CUTX_TEST_S3_REGION").unwrap_or_else(|| "us-east-1".into()),
        bucket: format!("cutx-test-{}", uuid::Uuid::new_v4().simple()),
        access_key: Secret::new(required("CUTX_TEST_S3_ACCESS_KEY")),
        secret_key: Secret::new(required("CUTX_TEST_S3_SECRET_KEY")),
        path_style: true,
        part_size: S3Config::DEFAULT_PART_SIZE,
    })
}

async fn store_for(test: &str) -> Option<S3MediaStore> {
    let config = test_config(test)?;
    Some(S3MediaStore::connect(config).await.expect("connecting to the test S3 server"))
}

/// Bytes that differ at every offset modulo a large prime, so a swapped or lost part shows.
fn pattern(len: usize) -> Bytes {
    (0..len).map(|i| (i % 251) as u8 ^ (i / 251) as u8).collect()
}

/// A plain SDK client on the test server, to look at what the store leaves in a bucket.
fn sdk_client(config: &S3Config) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    let credentials = Credentials::new(config.access_key.expose(), config.secret_key.expose(), None, None, "test");
    let sdk_config = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new(config.region.clone()))
        .credentials_provider(credentials)
        .endpoint_url(config.endpoint.clone().unwrap())
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(sdk_config)
}

/// A source that breaks: a disk or a provider failing in the middle of an output.
struct FailingReader;

impl AsyncRead for FailingReader {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Err(std::io::Error::other("the source broke")))
    }
}

async fn get(url: &str) -> reqwest::Response {
    {
        cutx_platform::fetch::install_tls_provider();
        reqwest::get(url).await
    }
    .expect("GET on the presigned URL")
}

#[tokio::test]
async fn an_object_put_is_fetched_back_byte_for_byte_with_its_content_type_through_its_presigned_url() {
    let Some(store) = store_for("put_then_get").await else { return };
    let bytes = pattern(300_000);
    store.put("jobs/0192/0.png", bytes.clone(), "image/png").await.unwrap();

    let signed = store.signed_url("jobs/0192/0.png", Duration::from_secs(300)).await.unwrap();
    let now_millis = chrono::Utc::now().timestamp_millis();
    assert!((now_millis + 298_000..=now_millis + 301_000).contains(&signed.expires_at_millis));
    let response = get(&signed.url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert!(response.bytes().await.unwrap() == bytes, "the body differs from what was put");
}

#[tokio::test]
async fn a_presigned_url_for_another_key_or_with_a_changed_expiry_or_signature_is_refused() {
    let Some(store) = store_for("tampered_urls").await else { return };
    store.put("jobs/a/0.png", Bytes::from_static(b"a"), "image/png").await.unwrap();
    store.put("jobs/b/0.png", Bytes::from_static(b"b"), "image/png").await.unwrap();
    let url = store.signed_url("jobs/a/0.png", Duration::from_secs(60)).await.unwrap().url;
    assert_eq!(get(&url).await.status(), StatusCode::OK, "the untouched URL must work: {url}");

    let signature = url.split("X-Amz-Signature=").nth(1).expect("a SigV4 presigned URL")[..64].to_string();
    let flipped = format!("{}{}", if signature.starts_with('0') { '1' } else { '0' }, &signature[1..]);
    let tampered = [
        ("another key", url.replacen("jobs/a/0.png", "jobs/b/0.png", 1), StatusCode::FORBIDDEN),
        ("a longer expiry", url.replacen("X-Amz-Expires=60", "X-Amz-Expires=600", 1), StatusCode::FORBIDDEN),
        ("another signature", url.replacen(&signature, &flipped, 1), StatusCode::FORBIDDEN),
        // S3 calls a presigned URL without its signature malformed (AuthorizationQueryParametersError).
        ("no signature", url.replacen(&format!("&X-Amz-Signature={signature}"), "", 1), StatusCode::BAD_REQUEST),
    ];
    for (what, tampered_url, refusal) in tampered {
        assert_ne!(tampered_url, url, "{what}: the URL was not changed");
        assert_eq!(get(&tampered_url).await.status(), refusal, "{what}: {tampered_url}");
    }
}

#[tokio::test]
async fn an_expired_presigned_url_is_refused() {
    let Some(store) = store_for("expired_url").await else { return };
    store.put("jobs/a/0.png", Bytes::from_static(b"a"), "image/png").await.unwrap();
    let signed = store.signed_url("jobs/a/0.png", Duration::from_secs(1)).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = get(&signed.url).await.status();
        if status == StatusCode::FORBIDDEN {
            break;
        }
        assert_eq!(status, StatusCode::OK, "before it expires the URL works");
        assert!(Instant::now() < deadline, "the URL still works 15 s after a 1 s expiry");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(chrono::Utc::now().timestamp_millis() >= signed.expires_at_millis, "refused before its expiry");
}

#[tokio::test]
async fn a_large_object_goes_up_in_several_parts_and_comes_back_intact() {
    let Some(mut config) = test_config("multipart") else { return };
    config.part_size = 5 * MIB;
    let store = S3MediaStore::connect(config).await.unwrap();
    let bytes = pattern(11 * MIB + 12_345);

    store.put("jobs/big/0.mp4", bytes.clone(), "video/mp4").await.unwrap();
    let size = store.put_reader("jobs/big/1.mp4", &bytes[..], "video/mp4").await.unwrap();
    assert_eq!(size, bytes.len() as u64);

    for key in ["jobs/big/0.mp4", "jobs/big/1.mp4"] {
        let response = get(&store.signed_url(key, Duration::from_secs(60)).await.unwrap().url).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "video/mp4");
        // A multipart object's ETag is "<md5 of the part md5s>-<number of parts>".
        let etag = response.headers()["etag"].to_str().unwrap().to_string();
        assert!(etag.trim_matches('"').ends_with("-3"), "{key}: ETag {etag} is not a 3-part upload's");
        assert!(response.bytes().await.unwrap() == bytes, "{key}: the body differs from what was put");
    }
}

#[tokio::test]
async fn a_failed_multipart_upload_is_aborted_and_leaves_nothing_behind() {
    let Some(mut config) = test_config("aborted_upload") else { return };
    config.part_size = 5 * MIB;
    let store = S3MediaStore::connect(config.clone()).await.unwrap();
    let bytes = pattern(11 * MIB);
    // Two whole parts go up before the source fails.
    let failing = (&bytes[..]).chain(FailingReader);

    let put = store.put_reader("jobs/broken/0.mp4", failing, "video/mp4").await;
    assert!(matches!(put, Err(MediaError::Storage { .. })), "{put:?}");
    let response = get(&store.signed_url("jobs/broken/0.mp4", Duration::from_secs(60)).await.unwrap().url).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let uploads = sdk_client(&config).list_multipart_uploads().bucket(&config.bucket).send().await.unwrap();
    assert!(uploads.uploads().is_empty(), "an upload was left open: {:?}", uploads.uploads());
}

#[tokio::test]
async fn a_presigned_url_carries_the_public_endpoint_and_works_there() {
    let Some(mut config) = test_config("public_endpoint") else { return };
    let internal = config.endpoint.clone().unwrap();
    let public = internal.replacen("127.0.0.1", "localhost", 1);
    assert_ne!(public, internal, "the test endpoint is expected on 127.0.0.1");
    config.public_endpoint = Some(public.clone());
    let store = S3MediaStore::connect(config).await.unwrap();
    store.put("jobs/a/0.png", Bytes::from_static(b"a"), "image/png").await.unwrap();

    let url = store.signed_url("jobs/a/0.png", Duration::from_secs(60)).await.unwrap().url;
    assert!(url.starts_with(&format!("{public}/")), "{url}");
    let response = get(&url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(&response.bytes().await.unwrap()[..], b"a");
}

#[tokio::test]
async fn an_object_of_exactly_one_part_from_a_reader_goes_up_in_one_request() {
    let Some(mut config) = test_config("one_part_reader") else { return };
    config.part_size = 5 * MIB;
    let store = S3MediaStore::connect(config).await.unwrap();
    let bytes = pattern(5 * MIB);

    assert_eq!(
        store.put_reader("jobs/one/0.bin", &bytes[..], "application/octet-stream").await.unwrap(),
        bytes.len() as u64
    );
    assert_eq!(store.put_reader("jobs/one/empty.bin", &b""[..], "application/octet-stream").await.unwrap(), 0);

    let response = get(&store.signed_url("jobs/one/0.bin", Duration::from_secs(60)).await.unwrap().url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response.headers()["etag"].to_str().unwrap().contains('-'), "a single PutObject has a plain ETag");
    assert!(response.bytes().await.unwrap() == bytes);
    let empty = get(&store.signed_url("jobs/one/empty.bin", Duration::from_secs(60)).await.unwrap().url).await;
    assert_eq!(empty.status(), StatusCode::OK);
    assert!(empty.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn connect_creates_a_missing_bucket_and_connecting_again_or_concurrently_is_fine() {
    let Some(config) = test_config("create_bucket") else { return };
    let first = S3MediaStore::connect(config.clone()).await.expect("creating the bucket");
    first.put("jobs/a/0.png", Bytes::from_static(b"a"), "image/png").await.unwrap();
    let again = S3MediaStore::connect(config.clone()).await.expect("connecting to an existing bucket");
    let response = get(&again.signed_url("jobs/a/0.png", Duration::from_secs(60)).await.unwrap().url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(&response.bytes().await.unwrap()[..], b"a");

    let racing = S3Config { bucket: format!("{}-race", config.bucket), ..config };
    let connects = (0..4).map(|_| S3MediaStore::connect(racing.clone()));
    for connected in futures::future::join_all(connects).await {
        connected.expect("one of several processes connecting to a missing bucket at once");
    }
}

#[tokio::test]
async fn a_wrong_secret_key_fails_connect_without_revealing_the_key() {
    let Some(mut config) = test_config("wrong_secret") else { return };
    config.secret_key = Secret::new("not-the-secret-7f3a9c".into());
    let Err(error @ MediaError::Storage { .. }) = S3MediaStore::connect(config).await else {
        panic!("connecting with a wrong secret key must fail with a storage error");
    };
    let message = cutx_platform::error::chain(&error);
    assert!(message.contains("cutx-test-"), "the message names the bucket: {message}");
    assert!(!message.contains("not-the-secret-7f3a9c"), "the message reveals the secret: {message}");
}

#[tokio::test]
async fn an_unsafe_key_is_refused_before_any_request() {
    // A server that says yes to everything and counts what it is asked, so it needs no S3.
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let app = axum::Router::new().fallback(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async { StatusCode::OK }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = S3Config {
        endpoint: Some(endpoint),
        public_endpoint: None,
        region: "us-east-1".into(),
        bucket: "cutx-unsafe-keys".into(),
        access_key: Secret::new("key".into()),
        secret_key: Secret::new("secret".into()),
        path_style: true,
        part_size: S3Config::DEFAULT_PART_SIZE,
    };
    let store = S3MediaStore::connect(config).await.expect("connecting to the yes-server");
    let after_connect = requests.load(Ordering::SeqCst);

    for key in ["../escape", "/abs", "jobs//x", "jobs/x?acl", "jobs/x%2e", ""] {
        let put = store.put(key, Bytes::from_static(b"x"), "image/png").await;
        assert!(matches!(put, Err(MediaError::InvalidKey(_))), "{key}: {put:?}");
        let reader = store.put_reader(key, &b"x"[..], "image/png").await;
        assert!(matches!(reader, Err(MediaError::InvalidKey(_))), "{key}: {reader:?}");
        let url = store.signed_url(key, Duration::from_secs(60)).await;
        assert!(matches!(url, Err(MediaError::InvalidKey(_))), "{key}: {url:?}");
    }
    assert_eq!(requests.load(Ordering::SeqCst), after_connect, "an unsafe key reached the server");
    store.put("jobs/a/0.png", Bytes::from_static(b"x"), "image/png").await.expect("a safe key is sent");
    assert_eq!(requests.load(Ordering::SeqCst), after_connect + 1);
}
