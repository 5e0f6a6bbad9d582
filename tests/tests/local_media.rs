//! The media kinds on the embedded default, with no keys: `cutx dev` makes a
//! voice-over that plays, a clip that decodes from an earlier job's picture, a reframed picture
//! and clip of the asked ratio; and refuses avatar videos, which need a remote provider, naming
//! the setting that enables them and charging nothing.

use cutx_proto::pb;
use cutx_tests::{Client, Server, Transport};

async fn fetch(output: &pb::JobOutput) -> Vec<u8> {
    let response = cutx_tests::get(&output.url).await.unwrap();
    assert!(response.status().is_success());
    response.bytes().await.unwrap().to_vec()
}

fn gif_frames(bytes: &[u8]) -> Vec<image::Frame> {
    use image::AnimationDecoder;
    image::codecs::gif::GifDecoder::new(std::io::Cursor::new(bytes.to_vec()))
        .expect("a GIF")
        .into_frames()
        .collect_frames()
        .expect("its frames")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_local_media_kind_makes_a_real_file_and_avatar_videos_are_refused_uncharged() {
    // Reframes at 2 credits instead of 20, so one new user's 25 pay for the whole tour.
    let server = Server::in_process(|o| o.prices.reframe = cutx_platform::credits::Credits::from_u32(2)).await;
    let mut client = Client::new(&server, Transport::Rest);
    client.sign_in("ada@example.com").await;

    let voice = client
        .voiceover(pb::GenerateVoiceoverRequest {
            text: "Fresh beeswax wraps, three sizes, one price.".into(),
            speed: 1.25,
            ..Default::default()
        })
        .await
        .unwrap();
    let ad = client
        .static_ad(pb::GenerateStaticAdRequest { prompt: "Beeswax wraps".into(), ..Default::default() })
        .await
        .unwrap();
    let voice = client.wait_for_job(&voice.job_id).await;
    assert_eq!(voice.status(), pb::JobStatus::Completed, "{}", voice.error);
    assert_eq!(voice.outputs[0].content_type, "audio/wav");
    let wav = hound::WavReader::new(std::io::Cursor::new(fetch(&voice.outputs[0]).await)).expect("a WAV");
    assert_eq!(wav.spec().sample_rate, 22_050);
    assert!(wav.duration() > 22_050, "more than a second of speech");

    let ad = client.wait_for_job(&ad.job_id).await;
    assert_eq!(ad.status(), pb::JobStatus::Completed);

    // A clip from the ad's picture, then the clip and the picture reframed.
    let clip = client
        .image_to_video(pb::GenerateImageToVideoRequest {
            source_job_id: ad.id.clone(),
            prompt: "the wraps unfold slowly".into(),
            duration_seconds: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let clip = client.wait_for_job(&clip.job_id).await;
    assert_eq!(clip.status(), pb::JobStatus::Completed, "{}", clip.error);
    assert_eq!(clip.outputs[0].content_type, "image/gif");
    let frames = gif_frames(&fetch(&clip.outputs[0]).await);
    assert!(frames.len() >= 10, "{} frames", frames.len());
    assert_ne!(frames[0].buffer(), frames[frames.len() / 2].buffer(), "the clip moves");

    for (source, ratio) in [(&ad.id, "16:9"), (&clip.id, "9:16")] {
        let framed = client
            .reframe(pb::GenerateReframeRequest {
                source_job_id: source.clone(),
                aspect_ratio: ratio.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let framed = client.wait_for_job(&framed.job_id).await;
        assert_eq!(framed.status(), pb::JobStatus::Completed, "{}", framed.error);
        let out = &framed.outputs[0];
        let (w, h) = if ratio == "16:9" { (16, 9) } else { (9, 16) };
        assert_eq!(out.width * h, out.height * w, "{ratio}: {}x{}", out.width, out.height);
        let bytes = fetch(out).await;
        if source == &clip.id {
            let frames = gif_frames(&bytes);
            assert!(frames.len() > 1, "a reframed clip stays a clip");
            assert_eq!(frames[0].buffer().dimensions(), (out.width, out.height));
        } else {
            let decoded = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
            assert_eq!((decoded.info().width, decoded.info().height), (out.width, out.height));
        }
    }
    // tts 2 + static ad 3 + i2v 10 + two reframes at 2.
    assert_eq!(client.balance().await.unwrap().balance, 25 - 19);

    let before = client.balance().await.unwrap().balance;
    let refused = client
        .ugc_video(pb::GenerateVideoRequest {
            avatar_image_url: "https://cdn.example.com/face.jpg".into(),
            script: "Hello there".into(),
            ..Default::default()
        })
        .await
        .expect_err("refused on the embedded default");
    assert_eq!(refused.code, tonic::Code::FailedPrecondition);
    assert_eq!(refused.http, Some(400));
    assert!(refused.message.contains("CUTX_REPLICATE_TOKEN"), "{}", refused.message);
    assert_eq!(client.balance().await.unwrap().balance, before);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cannot_start_from_another_users_output() {
    let server = Server::spawn().await;
    let mut ada = Client::new(&server, Transport::Rest);
    ada.sign_in("ada@example.com").await;
    let mut eve = Client::new(&server, Transport::Grpc);
    eve.sign_in("eve@example.com").await;
    let ad = ada
        .static_ad(pb::GenerateStaticAdRequest { prompt: "Beeswax wraps".into(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(ada.wait_for_job(&ad.job_id).await.status(), pb::JobStatus::Completed);
    let stolen = eve
        .image_to_video(pb::GenerateImageToVideoRequest {
            source_job_id: ad.job_id.clone(),
            prompt: "the wraps unfold".into(),
            ..Default::default()
        })
        .await
        .expect_err("another user's job");
    assert_eq!(stolen.code, tonic::Code::NotFound, "as if it did not exist: {stolen:?}");
    assert_eq!(eve.balance().await.unwrap().balance, 25);
    server.stop().await;
}
