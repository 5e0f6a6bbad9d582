//! Real generation through Replicate, against a fake that follows Replicate's wire format
//! (`cutx_tests::fake_replicate`), in both modes: `cutx dev` with webhook-svc mounted on its one
//! port, and the distributed mesh where webhook-svc is its own process that the fake calls over
//! HTTP. Each scenario runs in both; the distributed one is skipped (or, under
//! `CUTX_REQUIRE_TOOLS=1`, fails) without PostgreSQL, NATS and S3.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cutx::remote::{FetchArgs, Outside, ReplicateArgs};
use cutx_proto::pb;
use cutx_tests::fake_replicate::{FakeReplicate, Outcome, OutputShape, Webhooks};
use cutx_tests::{ApiError, Client, Infra, Mode, Server, Transport, eventually};
use futures::StreamExt;

/// The mesh's settings a scenario changes.
#[derive(Clone, Copy)]
struct Knobs {
    reconcile_after_secs: u64,
    deadline_secs: u64,
    max_bytes: u64,
    workers: usize,
    /// Every kind costs nothing (the bulk scenario); otherwise every kind costs 1.
    free: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Self { reconcile_after_secs: 60, deadline_secs: 600, max_bytes: 16 * 1024 * 1024, workers: 2, free: false }
    }
}

const KINDS: [&str; 7] = ["COPY", "SCRAPE", "STATIC_AD", "TTS", "I2V", "REFRAME", "UGC_VIDEO"];

async fn mesh(mode: Mode, fake: &FakeReplicate, knobs: Knobs) -> Option<Server> {
    let price = if knobs.free { 0 } else { 1 };
    let credits = cutx_platform::credits::Credits::from_u32(price);
    match mode {
        Mode::Dev => Some(
            Server::in_process(|o| {
                let fetch = FetchArgs {
                    fetch_allow_origins: fake.origin.clone(),
                    fetch_max_bytes: knobs.max_bytes,
                    ..FetchArgs::default()
                };
                let replicate = ReplicateArgs {
                    replicate_token: Some(cutx_platform::secret::Secret::new(fake.token.clone())),
                    replicate_base_url: fake.base.clone(),
                    replicate_creates_per_minute: 60_000,
                    replicate_poll_ms: 50,
                    ..ReplicateArgs::default()
                };
                o.outside = Outside::build(&fetch, &replicate).expect("outbound settings");
                o.webhooks = true;
                o.deadlines = jobs_svc::Deadlines {
                    quiet_after: Duration::from_secs(knobs.reconcile_after_secs),
                    run_for: Duration::from_secs(knobs.deadline_secs),
                };
                o.housekeeping.every = Duration::from_secs(1);
                o.workers = knobs.workers;
                o.prices = jobs_svc::Prices {
                    copy: credits,
                    scrape: cutx_platform::credits::Credits::ZERO,
                    static_ad: credits,
                    tts: credits,
                    i2v: credits,
                    reframe: credits,
                    ugc_video: credits,
                };
            })
            .await,
        ),
        Mode::Distributed => {
            let infra = Infra::from_env()?;
            let mut env: Vec<(String, String)> = vec![
                ("CUTX_REPLICATE_TOKEN".into(), fake.token.clone()),
                ("CUTX_REPLICATE_BASE_URL".into(), fake.base.clone()),
                ("CUTX_FETCH_ALLOW_ORIGINS".into(), fake.origin.clone()),
                ("CUTX_FETCH_MAX_BYTES".into(), knobs.max_bytes.to_string()),
                ("CUTX_REPLICATE_CREATES_PER_MINUTE".into(), "60000".into()),
                ("CUTX_HOUSEKEEPING_EVERY_SECS".into(), "1".into()),
                ("CUTX_RECONCILE_AFTER_SECS".into(), knobs.reconcile_after_secs.to_string()),
                ("CUTX_PROVIDER_DEADLINE_SECS".into(), knobs.deadline_secs.to_string()),
                ("CUTX_WORKERS".into(), knobs.workers.to_string()),
            ];
            for kind in KINDS.iter().filter(|k| !matches!(**k, "SCRAPE")) {
                env.push((format!("CUTX_PRICE_{kind}"), price.to_string()));
            }
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            Some(Server::spawn_distributed_with(&infra, &env).await)
        }
    }
}

async fn signed_in(server: &Server, email: &str) -> Client {
    let mut client = Client::new(server, Transport::Rest);
    client.sign_in(email).await;
    client
}

/// The media kinds, each created with a valid request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    StaticAd,
    Tts,
    I2v,
    Reframe,
    Ugc,
}

const MEDIA_KINDS: [Kind; 5] = [Kind::StaticAd, Kind::Tts, Kind::I2v, Kind::Reframe, Kind::Ugc];

async fn create(client: &Client, kind: Kind) -> Result<String, ApiError> {
    Ok(match kind {
        Kind::StaticAd => {
            let request =
                pb::GenerateStaticAdRequest { prompt: "Beeswax wraps on a kitchen table".into(), ..Default::default() };
            client.static_ad(request).await?.job_id
        }
        Kind::Tts => {
            let request =
                pb::GenerateVoiceoverRequest { text: "Keep bread fresh for days.".into(), ..Default::default() };
            client.voiceover(request).await?.job_id
        }
        Kind::I2v => {
            let request = pb::GenerateImageToVideoRequest {
                image_url: "https://cdn.example.com/wraps.png".into(),
                prompt: "the wraps unfold slowly".into(),
                ..Default::default()
            };
            client.image_to_video(request).await?.job_id
        }
        Kind::Reframe => {
            let request = pb::GenerateReframeRequest {
                source_url: "https://cdn.example.com/wraps.png".into(),
                aspect_ratio: "9:16".into(),
                ..Default::default()
            };
            client.reframe(request).await?.job_id
        }
        Kind::Ugc => {
            let request = pb::GenerateVideoRequest {
                avatar_image_url: "https://cdn.example.com/face.jpg".into(),
                script: "These wraps replaced all my plastic.".into(),
                ..Default::default()
            };
            client.ugc_video(request).await?.job_id
        }
    })
}

/// Fetches a job's output and decodes it as what its content type says.
async fn decode_output(output: &pb::JobOutput) {
    let response = cutx_tests::get(&output.url).await.expect("GET on the output URL");
    assert!(response.status().is_success(), "{} answered {}", output.url, response.status());
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, output.size_bytes);
    match output.content_type.as_str() {
        "image/png" => {
            let decoder = png::Decoder::new(std::io::Cursor::new(bytes.to_vec()));
            let reader = decoder.read_info().expect("a PNG");
            assert_eq!((reader.info().width, reader.info().height), (output.width, output.height));
        }
        "image/gif" => {
            use image::AnimationDecoder;
            let frames = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(bytes.to_vec()))
                .expect("a GIF")
                .into_frames()
                .collect_frames()
                .expect("GIF frames");
            assert!(!frames.is_empty());
        }
        "audio/wav" => {
            let reader = hound::WavReader::new(std::io::Cursor::new(bytes.to_vec())).expect("a WAV");
            assert!(reader.duration() > 0);
        }
        other => panic!("unexpected output type {other}"),
    }
}

async fn deductions_and_refunds(client: &Client, job_id: &str) -> (usize, usize) {
    let ledger = client.ledger().await.unwrap();
    let of = |t: pb::LedgerEntryType| ledger.iter().filter(|e| e.r#type() == t && e.reference == job_id).count();
    (of(pb::LedgerEntryType::Deduction), of(pb::LedgerEntryType::Refund))
}

/// Waits for a failed or expired job's one refund (it lands just after the job ends), then
/// checks the job was charged once and refunded once.
async fn refunded_once(client: &Client, job_id: &str) {
    eventually("the refund", Duration::from_secs(10), || async {
        (deductions_and_refunds(client, job_id).await.1 >= 1).then_some(())
    })
    .await;
    assert_eq!(deductions_and_refunds(client, job_id).await, (1, 1), "job {job_id}");
}

/// The job's recorded moves into `to` (its history, from the mesh's database).
async fn moves_into(server: &Server, job_id: &str, to: &str) -> usize {
    use sea_orm::ConnectionTrait;
    let db = server.database().await;
    let sql = format!(
        "SELECT id FROM job_transitions WHERE job_id = '{job_id}' AND to_status = '{to}' AND (from_status IS NULL OR from_status <> to_status)"
    );
    db.query_all_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql)).await.unwrap().len()
}

async fn history(server: &Server, job_id: &str) -> Vec<String> {
    use sea_orm::ConnectionTrait;
    let db = server.database().await;
    let sql = format!("SELECT reason FROM job_transitions WHERE job_id = '{job_id}' ORDER BY created_at, id");
    let rows = db.query_all_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    rows.iter().map(|r| r.try_get::<String>("", "reason").unwrap()).collect()
}

async fn each_kind_completes_with_its_files_for_every_output_shape(mode: Mode) {
    let fake = FakeReplicate::start().await;
    let Some(server) = mesh(mode, &fake, Knobs::default()).await else { return };
    let client = signed_in(&server, "ada@example.com").await;
    for shape in [OutputShape::Single, OutputShape::List, OutputShape::Object] {
        fake.set(|b| b.output_shape = shape);
        let mut ids = Vec::new();
        for kind in MEDIA_KINDS {
            ids.push((kind, create(&client, kind).await.unwrap_or_else(|e| panic!("{kind:?}: {e:?}"))));
        }
        for (kind, id) in ids {
            let job = client.wait_for_job(&id).await;
            assert_eq!(job.status(), pb::JobStatus::Completed, "{kind:?} {shape:?}: {}", job.error);
            let prediction = fake.prediction(&job.prediction_id).expect("the job keeps its prediction id");
            assert!(prediction.webhook.as_deref().is_some_and(|w| w.ends_with(&format!("?job={id}"))));
            match shape {
                OutputShape::Single => assert_eq!(job.outputs.len(), 1, "{kind:?}"),
                OutputShape::List => assert_eq!(job.outputs.len(), 2, "{kind:?}"),
                OutputShape::Object => assert!(!job.outputs.is_empty(), "{kind:?}"),
            }
            for output in &job.outputs {
                decode_output(output).await;
            }
            let kinds_file = match kind {
                Kind::Tts => "audio/wav",
                Kind::I2v | Kind::Ugc => "image/gif",
                Kind::StaticAd | Kind::Reframe => "image/png",
            };
            let types: Vec<&str> = job.outputs.iter().map(|o| o.content_type.as_str()).collect();
            assert!(types.contains(&kinds_file), "{kind:?} {shape:?}: {types:?}");
            let told = history(&server, &id).await;
            assert!(told.iter().any(|r| r.starts_with("submitted to replicate")), "{told:?}");
            assert!(told.iter().any(|r| r.starts_with("replicate webhook")), "{told:?}");
        }
    }
    // Fifteen jobs at one credit each.
    assert_eq!(client.balance().await.unwrap().balance, 25 - 15);

    // Bad input, per kind: refused by field, nothing charged, no job.
    let jobs_before = client.all_jobs().await.len();
    let refused: Vec<(Result<String, ApiError>, &str)> = vec![
        (
            client
                .voiceover(pb::GenerateVoiceoverRequest { speed: 9.0, text: "hi".into(), ..Default::default() })
                .await
                .map(|r| r.job_id),
            "speed",
        ),
        (client.voiceover(pb::GenerateVoiceoverRequest::default()).await.map(|r| r.job_id), "text"),
        (
            client
                .image_to_video(pb::GenerateImageToVideoRequest {
                    image_url: "http://cdn.example.com/a.png".into(),
                    prompt: "a slow turn".into(),
                    ..Default::default()
                })
                .await
                .map(|r| r.job_id),
            "image_url",
        ),
        (
            client
                .reframe(pb::GenerateReframeRequest {
                    source_url: "https://cdn.example.com/a.png".into(),
                    ..Default::default()
                })
                .await
                .map(|r| r.job_id),
            "aspect_ratio",
        ),
        (
            client
                .ugc_video(pb::GenerateVideoRequest { script: "hello".into(), ..Default::default() })
                .await
                .map(|r| r.job_id),
            "avatar_image_url",
        ),
        (
            client
                .static_ad(pb::GenerateStaticAdRequest { prompt: "tiny".into(), ..Default::default() })
                .await
                .map(|r| r.job_id),
            "prompt",
        ),
    ];
    for (result, field) in refused {
        let error = result.expect_err("refused");
        assert_eq!(error.http, Some(400), "{field}: {error:?}");
        assert!(error.fields.iter().any(|f| f == field), "{field}: {error:?}");
    }
    // A job to start from that is not there is not found, and costs nothing either.
    let missing = client
        .image_to_video(pb::GenerateImageToVideoRequest {
            source_job_id: "0192f5a4-1c3e-7b2a-9c4d-5e6f7a8b9c0d".into(),
            prompt: "a slow turn".into(),
            ..Default::default()
        })
        .await
        .expect_err("no such job");
    assert_eq!(missing.code, tonic::Code::NotFound, "{missing:?}");
    assert_eq!(client.balance().await.unwrap().balance, 25 - 15);
    assert_eq!(client.all_jobs().await.len(), jobs_before);
    server.stop().await;
}

/// The URL the fake calls back at, for a test that forges callbacks.
fn webhook_url(server: &Server, mode: Mode, job_id: &str) -> String {
    let base = match mode {
        Mode::Dev => server.base.clone(),
        Mode::Distributed => server.service("webhook").to_string(),
    };
    format!("{base}/webhooks/replicate?job={job_id}")
}

async fn prediction_json(fake: &FakeReplicate, id: &str) -> serde_json::Value {
    cutx_tests::http()
        .get(format!("{}/predictions/{id}", fake.base))
        .bearer_auth(&fake.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn a_forged_stale_or_altered_webhook_is_refused_and_changes_nothing(mode: Mode) {
    let fake = FakeReplicate::start().await;
    fake.set(|b| b.webhooks = Webhooks::Drop);
    let Some(server) = mesh(mode, &fake, Knobs::default()).await else { return };
    let client = signed_in(&server, "ada@example.com").await;
    let id = create(&client, Kind::StaticAd).await.unwrap();
    let job = eventually("the job to be handed over", Duration::from_secs(20), || async {
        client.get_job(&id).await.ok().filter(|j| !j.prediction_id.is_empty())
    })
    .await;
    fake.wait_terminal(&job.prediction_id).await;
    let body = serde_json::to_vec(&prediction_json(&fake, &job.prediction_id).await).unwrap();
    let now = chrono::Utc::now().timestamp();
    let url = webhook_url(&server, mode, &id);
    let post = |webhook_id: &str, ts: i64, signature: String, body: Vec<u8>| {
        cutx_tests::http()
            .post(&url)
            .header("content-type", "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
    };
    let mut altered = body.clone();
    let at = altered.iter().position(|b| *b == b'{').unwrap() + 1;
    altered.insert(at, b' ');
    let cases: Vec<(&str, i64, String, Vec<u8>)> = vec![
        ("msg_bad_signature", now, "v1,c2lnbmF0dXJlIHRoYXQgaXMgbm90IHJpZ2h0".into(), body.clone()),
        ("msg_six_minutes_old", now - 360, fake.sign("msg_six_minutes_old", now - 360, &body), body.clone()),
        ("msg_six_minutes_ahead", now + 360, fake.sign("msg_six_minutes_ahead", now + 360, &body), body.clone()),
        ("msg_changed_body", now, fake.sign("msg_changed_body", now, &body), altered),
        ("msg_other_id", now, fake.sign("msg_another_id", now, &body), body.clone()),
        ("msg_unversioned", now, fake.sign("msg_unversioned", now, &body).replace("v1,", "v2,"), body.clone()),
    ];
    for (webhook_id, ts, signature, body) in cases {
        let answer = post(webhook_id, ts, signature, body).await.unwrap();
        assert_eq!(answer.status().as_u16(), 401, "{webhook_id}");
    }
    let unsigned = cutx_tests::http().post(&url).body(body.clone()).send().await.unwrap();
    assert_eq!(unsigned.status().as_u16(), 401);
    let after = client.get_job(&id).await.unwrap();
    assert_eq!(after.status(), pb::JobStatus::Processing);
    assert!(after.outputs.is_empty());
    assert_eq!(after.updated_at, job.updated_at);
    assert!(!history(&server, &id).await.iter().any(|r| r.contains("webhook") || r.contains("completed")));

    // A genuine, signed callback about this job's prediction, sent to another job's URL, is
    // dropped: the other job keeps waiting for its own prediction.
    let other = create(&client, Kind::StaticAd).await.unwrap();
    let other_job = eventually("the other job to be handed over", Duration::from_secs(20), || async {
        client.get_job(&other).await.ok().filter(|j| !j.prediction_id.is_empty())
    })
    .await;
    let misdirected = cutx_tests::http()
        .post(webhook_url(&server, mode, &other))
        .header("webhook-id", "msg_misdirected")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", fake.sign("msg_misdirected", now, &body))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert!(misdirected.status().is_success());
    let other_after = client.get_job(&other).await.unwrap();
    assert_eq!(other_after.status(), pb::JobStatus::Processing);
    assert!(other_after.outputs.is_empty());
    assert_eq!(other_after.prediction_id, other_job.prediction_id);

    // The same body correctly signed (among other signatures) is taken.
    let good = format!("v1,bm90IGl0 {}", fake.sign("msg_good", now, &body));
    assert_eq!(post("msg_good", now, good, body).await.unwrap().status().as_u16(), 200);
    assert_eq!(client.wait_for_job(&id).await.status(), pb::JobStatus::Completed);
    server.stop().await;
}

async fn duplicated_and_reordered_webhooks_complete_a_job_once_and_charge_once(mode: Mode) {
    let fake = FakeReplicate::start().await;
    let Some(server) = mesh(mode, &fake, Knobs::default()).await else { return };
    let client = signed_in(&server, "ada@example.com").await;
    for webhooks in [Webhooks::Duplicate(3), Webhooks::Reorder] {
        fake.set(|b| b.webhooks = webhooks);
        let ids = [create(&client, Kind::StaticAd).await.unwrap(), create(&client, Kind::Tts).await.unwrap()];
        for id in &ids {
            let job = client.wait_for_job(id).await;
            assert_eq!(job.status(), pb::JobStatus::Completed, "{webhooks:?}: {}", job.error);
            // Every delivery of the prediction is answered, the late ones too.
            let prediction = job.prediction_id.clone();
            let deliveries = eventually("every webhook answered", Duration::from_secs(20), || async {
                let all: Vec<_> = fake.deliveries().into_iter().filter(|d| d.prediction_id == prediction).collect();
                let ok = all.iter().filter(|d| d.answer == cutx_tests::fake_replicate::Answer::Status(200)).count();
                let wanted = if webhooks == Webhooks::Reorder { 3 } else { 9 };
                (ok >= wanted).then_some(all)
            })
            .await;
            if webhooks == Webhooks::Reorder {
                assert!(deliveries[0].status.is_terminal(), "completed comes first: {deliveries:?}");
            }
            assert_eq!(moves_into(&server, id, "completed").await, 1, "{webhooks:?}");
            assert_eq!(deductions_and_refunds(&client, id).await, (1, 0), "{webhooks:?}");
            assert_eq!(client.get_job(id).await.unwrap().status(), pb::JobStatus::Completed);
        }
    }
    assert_eq!(client.balance().await.unwrap().balance, 25 - 4);
    server.stop().await;
}

async fn start_output_and_completed_in_every_order_give_one_completion_and_one_charge(mode: Mode) {
    let fake = FakeReplicate::start().await;
    // Only the callbacks this test sends arrive, in the orders it picks.
    fake.set(|b| b.webhooks = Webhooks::Drop);
    let Some(server) = mesh(mode, &fake, Knobs::default()).await else { return };
    let client = signed_in(&server, "ada@example.com").await;
    let orders: [[&str; 3]; 6] = [
        ["start", "output", "completed"],
        ["start", "completed", "output"],
        ["output", "start", "completed"],
        ["output", "completed", "start"],
        ["completed", "start", "output"],
        ["completed", "output", "start"],
    ];
    for order in orders {
        let id = create(&client, Kind::StaticAd).await.unwrap();
        let job = eventually("the job to be handed over", Duration::from_secs(20), || async {
            client.get_job(&id).await.ok().filter(|j| !j.prediction_id.is_empty())
        })
        .await;
        fake.wait_terminal(&job.prediction_id).await;
        let done = prediction_json(&fake, &job.prediction_id).await;
        let mut started = done.clone();
        started["status"] = "starting".into();
        started["output"] = serde_json::Value::Null;
        let mut output = done.clone();
        output["status"] = "processing".into();
        let url = webhook_url(&server, mode, &id);
        for event in order {
            let body = match event {
                "start" => &started,
                "output" => &output,
                _ => &done,
            };
            let body = serde_json::to_vec(body).unwrap();
            let webhook_id = format!("msg_{}_{event}", &id[id.len() - 12..]);
            let now = chrono::Utc::now().timestamp();
            let answer = cutx_tests::http()
                .post(&url)
                .header("webhook-id", &webhook_id)
                .header("webhook-timestamp", now.to_string())
                .header("webhook-signature", fake.sign(&webhook_id, now, &body))
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(answer.status().is_success(), "{order:?} {event}: {}", answer.status());
        }
        let job = client.wait_for_job(&id).await;
        assert_eq!(job.status(), pb::JobStatus::Completed, "{order:?}: {}", job.error);
        assert_eq!(job.outputs.len(), 1);
        assert_eq!(moves_into(&server, &id, "completed").await, 1, "{order:?}");
        assert_eq!(deductions_and_refunds(&client, &id).await, (1, 0), "{order:?}");
    }
    server.stop().await;
}

async fn the_reconciler_ends_jobs_whose_callbacks_never_come(mode: Mode) {
    let fake = FakeReplicate::start().await;
    fake.set(|b| b.webhooks = Webhooks::Drop);
    let knobs = Knobs { reconcile_after_secs: 1, deadline_secs: 4, ..Knobs::default() };
    let Some(server) = mesh(mode, &fake, knobs).await else { return };
    let client = signed_in(&server, "ada@example.com").await;

    // A dropped webhook: the reconciler asks, and finishes the job from the answer.
    let id = create(&client, Kind::StaticAd).await.unwrap();
    let job = client.wait_for_job(&id).await;
    assert_eq!(job.status(), pb::JobStatus::Completed, "{}", job.error);
    assert!(fake.prediction(&job.prediction_id).unwrap().gets >= 1);
    decode_output(&job.outputs[0]).await;
    assert!(history(&server, &id).await.iter().any(|r| r.starts_with("reconciler: GET prediction")));

    // A prediction that never finishes: canceled at the provider and expired, refunded once.
    fake.set(|b| b.outcome = Outcome::NeverFinish);
    let id = create(&client, Kind::Tts).await.unwrap();
    let job = client.wait_for_job(&id).await;
    assert_eq!(job.status(), pb::JobStatus::Expired);
    let prediction = job.prediction_id.clone();
    eventually("the prediction canceled", Duration::from_secs(10), || async {
        (fake.prediction(&prediction)?.cancels >= 1).then_some(())
    })
    .await;
    refunded_once(&client, &id).await;
    // Another reconciler round or two changes nothing.
    let later = Duration::from_secs(3);
    let _ = tokio::time::timeout(later, std::future::pending::<()>()).await;
    assert_eq!(deductions_and_refunds(&client, &id).await, (1, 1));
    assert_eq!(client.balance().await.unwrap().balance, 25 - 1);
    server.stop().await;
}

async fn canceling_a_job_cancels_its_prediction_and_refunds_once(mode: Mode) {
    let fake = FakeReplicate::start().await;
    fake.set(|b| b.outcome = Outcome::NeverFinish);
    let Some(server) = mesh(mode, &fake, Knobs::default()).await else { return };
    let client = signed_in(&server, "ada@example.com").await;
    let id = create(&client, Kind::I2v).await.unwrap();
    let job = eventually("the job to be handed over", Duration::from_secs(20), || async {
        client.get_job(&id).await.ok().filter(|j| !j.prediction_id.is_empty())
    })
    .await;
    let canceled = client.cancel_job(&id).await.unwrap().job.unwrap();
    assert_eq!(canceled.status(), pb::JobStatus::Canceled);
    let prediction = fake.prediction(&job.prediction_id).unwrap();
    assert_eq!(prediction.cancels, 1);
    assert_eq!(prediction.status, cutx_tests::fake_replicate::Status::Canceled);
    // The provider's own `completed: canceled` callback arrives and is answered, refunding nothing more.
    eventually("the canceled callback answered", Duration::from_secs(20), || async {
        fake.deliveries()
            .iter()
            .any(|d| {
                d.prediction_id == job.prediction_id
                    && d.status == cutx_tests::fake_replicate::Status::Canceled
                    && d.answer == cutx_tests::fake_replicate::Answer::Status(200)
            })
            .then_some(())
    })
    .await;
    assert_eq!(deductions_and_refunds(&client, &id).await, (1, 1));
    assert_eq!(client.get_job(&id).await.unwrap().status(), pb::JobStatus::Canceled);
    assert_eq!(client.balance().await.unwrap().balance, 25);
    server.stop().await;
}

/// A server on loopback that counts the requests it gets: nothing should ever reach it.
async fn inside_target() -> (u16, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            "secret"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, hits)
}

async fn outputs_pointing_inside_or_too_large_fail_the_job_refunded(mode: Mode) {
    let fake = FakeReplicate::start().await;
    let knobs = Knobs { max_bytes: 1024 * 1024, ..Knobs::default() };
    let Some(server) = mesh(mode, &fake, knobs).await else { return };
    let client = signed_in(&server, "ada@example.com").await;
    let (port, hits) = inside_target().await;
    // https, so each is refused for its address (after DNS for `localhost`), not its scheme; and
    // plain http to the same loopback server, refused as an origin nobody allowed.
    let inside = format!("https://127.0.0.1:{port}/x.png");
    let urls = [
        inside.clone(),
        format!("http://127.0.0.1:{port}/x.png"),
        "https://169.254.169.254/latest/meta-data/".to_string(),
        format!("https://[::1]:{port}/x.png"),
        format!("https://[::ffff:127.0.0.1]:{port}/x.png"),
        "https://10.0.0.1/x.png".to_string(),
        format!("https://localhost:{port}/x.png"),
        format!("http://{}/files/redirect?to={inside}", fake.origin),
        format!("http://{}/files/redirect?to=https://localhost:{port}/x.png", fake.origin),
        format!("http://{}/files/redirect?to=https://169.254.169.254/latest/meta-data/", fake.origin),
        format!("http://{}/files/endless", fake.origin),
    ];
    for url in urls {
        fake.set(|b| b.output_urls = Some(vec![url.clone()]));
        let id = create(&client, Kind::StaticAd).await.unwrap();
        let job = client.wait_for_job(&id).await;
        assert_eq!(job.status(), pb::JobStatus::Failed, "{url}");
        assert!(job.error.contains("could not be copied"), "{url}: {}", job.error);
        assert!(job.outputs.is_empty());
        refunded_once(&client, &id).await;
        if mode == Mode::Dev {
            assert!(!server.data_dir.join("media/jobs").join(&id).exists(), "{url}: an object was left");
        }
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a refused URL was fetched");
    assert_eq!(client.balance().await.unwrap().balance, 25);
    server.stop().await;
}

async fn six_hundred_jobs_against_a_throttling_replicate_all_complete_none_submitted_twice(mode: Mode) {
    let fake = FakeReplicate::start().await;
    fake.set(|b| {
        b.throttle_every = Some(3);
        b.retry_after_secs = 1;
    });
    let knobs = Knobs { free: true, workers: 16, ..Knobs::default() };
    let Some(server) = mesh(mode, &fake, knobs).await else { return };
    let client = signed_in(&server, "ada@example.com").await;
    let ids: Vec<String> = futures::stream::iter(0..600)
        .map(|_| create(&client, Kind::StaticAd))
        .buffer_unordered(32)
        .map(|r| r.expect("created"))
        .collect()
        .await;
    let ended: Vec<pb::Job> = futures::stream::iter(ids.iter())
        // A throttled queue of 600 drains slowly on a busy 2-core machine (CI runs other tests
        // beside it): the deadline is for a stuck job, not a speed target.
        .map(|id| client.wait_for_job_within(id, Duration::from_secs(300)))
        .buffer_unordered(32)
        .collect()
        .await;
    let failed: Vec<_> = ended.iter().filter(|j| j.status() != pb::JobStatus::Completed).collect();
    assert!(failed.is_empty(), "{} of 600 did not complete, e.g. {:?}", failed.len(), failed.first());
    let mut per_job = std::collections::HashMap::<String, usize>::new();
    for prediction in fake.predictions() {
        let job = prediction.webhook.unwrap().rsplit_once("?job=").unwrap().1.to_string();
        *per_job.entry(job).or_default() += 1;
    }
    assert_eq!(per_job.len(), 600);
    assert!(per_job.values().all(|n| *n == 1), "a job was submitted twice");
    let creates = fake.creates();
    assert_eq!(creates.created, 600);
    assert!(creates.throttled >= 200, "{creates:?}");
    server.stop().await;
}

macro_rules! in_both_modes {
    ($($scenario:ident),* $(,)?) => {
        mod dev {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(cutx_tests::Mode::Dev).await
                }
            )*
        }
        mod distributed {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(cutx_tests::Mode::Distributed).await
                }
            )*
        }
    };
}

in_both_modes!(
    each_kind_completes_with_its_files_for_every_output_shape,
    a_forged_stale_or_altered_webhook_is_refused_and_changes_nothing,
    duplicated_and_reordered_webhooks_complete_a_job_once_and_charge_once,
    start_output_and_completed_in_every_order_give_one_completion_and_one_charge,
    the_reconciler_ends_jobs_whose_callbacks_never_come,
    canceling_a_job_cancels_its_prediction_and_refunds_once,
    outputs_pointing_inside_or_too_large_fail_the_job_refunded,
    six_hundred_jobs_against_a_throttling_replicate_all_complete_none_submitted_twice,
);

/// `cutx dev` with a Replicate token and no webhook URL: predictions are polled.
fn polling(o: &mut cutx::dev::DevOptions, fake: &FakeReplicate) {
    let fetch = FetchArgs { fetch_allow_origins: fake.origin.clone(), ..FetchArgs::default() };
    let replicate = ReplicateArgs {
        replicate_token: Some(cutx_platform::secret::Secret::new(fake.token.clone())),
        replicate_base_url: fake.base.clone(),
        replicate_poll_ms: 50,
        ..ReplicateArgs::default()
    };
    o.outside = Outside::build(&fetch, &replicate).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_webhook_url_cutx_dev_polls_the_prediction_until_it_ends() {
    let fake = FakeReplicate::start().await;
    fake.set(|b| b.output_shape = OutputShape::List);
    let server = Server::in_process(|o| {
        polling(o, &fake);
    })
    .await;
    let client = signed_in(&server, "ada@example.com").await;
    let id = create(&client, Kind::StaticAd).await.unwrap();
    let job = client.wait_for_job(&id).await;
    assert_eq!(job.status(), pb::JobStatus::Completed, "{}", job.error);
    assert_eq!(job.outputs.len(), 2);
    let predictions = fake.predictions();
    assert_eq!(predictions.len(), 1);
    assert!(predictions[0].webhook.is_none());
    assert!(predictions[0].gets >= 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_polled_prediction_that_never_finishes_is_canceled_and_its_job_refunded() {
    let fake = FakeReplicate::start().await;
    fake.set(|b| b.outcome = Outcome::NeverFinish);
    let server = Server::in_process(|o| {
        polling(o, &fake);
        o.deadlines.run_for = Duration::from_secs(2);
    })
    .await;
    let client = signed_in(&server, "ada@example.com").await;
    let id = create(&client, Kind::Tts).await.unwrap();
    let job = client.wait_for_job(&id).await;
    assert_eq!(job.status(), pb::JobStatus::Failed);
    assert!(job.error.contains("did not finish"), "{}", job.error);
    let predictions = fake.predictions();
    assert_eq!(predictions.len(), 1);
    assert_eq!(predictions[0].cancels, 1);
    refunded_once(&client, &id).await;
    assert_eq!(client.balance().await.unwrap().balance, 25);
    server.stop().await;
}
