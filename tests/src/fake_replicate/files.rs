//! The output files: real WAVs, animated GIFs and PNGs, of the type the model's name promises,
//! served like Replicate's delivery URLs (no auth, `Content-Type` and `Content-Length`), and two
//! hostile files for the copier's limits: one that never ends and one that redirects.

use std::convert::Infallible;
use std::io::Cursor;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame, ImageFormat, Rgba, RgbaImage};
use serde::Deserialize;
use serde_json::{Value, json};

use super::OutputShape;
use super::state::{File, Shared};

/// What a model makes, read from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Audio,
    Video,
    Image,
}

impl Kind {
    fn of(model: &str) -> Self {
        let name = model.to_ascii_lowercase();
        let says = |words: &[&str]| words.iter().any(|w| name.contains(w));
        if says(&["speech", "tts"]) {
            Kind::Audio
        } else if says(&["video", "wan", "omni", "reframe-video"]) {
            Kind::Video
        } else {
            Kind::Image
        }
    }

    /// The files of an object output, by key.
    fn object(self) -> &'static [(&'static str, Render)] {
        match self {
            Kind::Audio => &[("audio", Render::Wav)],
            Kind::Video => &[("video", Render::Gif), ("thumbnail", Render::Png)],
            Kind::Image => &[("image", Render::Png)],
        }
    }

    fn main(self) -> Render {
        self.object()[0].1
    }
}

#[derive(Debug, Clone, Copy)]
enum Render {
    Wav,
    Gif,
    Png,
}

impl Render {
    fn ext(self) -> &'static str {
        match self {
            Render::Wav => "wav",
            Render::Gif => "gif",
            Render::Png => "png",
        }
    }

    /// A file whose content differs with `seed`, so two outputs are never the same bytes.
    fn render(self, seed: u8) -> File {
        match self {
            Render::Wav => File { content_type: "audio/wav", bytes: wav(220.0 + f32::from(seed) * 4.0) },
            Render::Gif => File { content_type: "image/gif", bytes: gif(seed) },
            Render::Png => File { content_type: "image/png", bytes: png(seed) },
        }
    }
}

/// Renders a succeeded prediction's output files, stores them, and answers the output in
/// `shape`: the served files' URLs, or `urls` in their place when a test gives some.
pub(super) fn output(shared: &Shared, id: &str, model: &str, shape: OutputShape, urls: Option<Vec<String>>) -> Value {
    let kind = Kind::of(model);
    let urls = urls.unwrap_or_else(|| {
        let renders: Vec<Render> = match shape {
            OutputShape::Single => vec![kind.main()],
            OutputShape::List => vec![kind.main(); 2],
            OutputShape::Object => kind.object().iter().map(|(_, render)| *render).collect(),
        };
        let seed = id.bytes().fold(0u8, |acc, b| acc.wrapping_mul(31).wrapping_add(b));
        let mut book = shared.book.lock().unwrap();
        renders
            .iter()
            .enumerate()
            .map(|(n, render)| {
                let path = format!("{id}/{n}.{}", render.ext());
                book.files.insert(path.clone(), render.render(seed.wrapping_add(n as u8 * 97)));
                format!("http://{}/files/{path}", shared.origin)
            })
            .collect()
    });
    match shape {
        OutputShape::Single => urls.first().map_or(Value::Null, |url| json!(url)),
        OutputShape::List => json!(urls),
        OutputShape::Object => {
            let keys = kind.object();
            let entries = urls.into_iter().enumerate().map(|(n, url)| {
                let key = keys.get(n).map_or_else(|| format!("file_{n}"), |(key, _)| key.to_string());
                (key, json!(url))
            });
            Value::Object(entries.collect())
        }
    }
}

pub(super) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/files/endless", get(endless))
        .route("/files/redirect", get(redirect))
        .route("/files/{id}/{name}", get(file))
}

async fn file(State(shared): State<Arc<Shared>>, Path((id, name)): Path<(String, String)>) -> Response {
    let found = shared.book.lock().unwrap().files.get(&format!("{id}/{name}")).cloned();
    let Some(file) = found else { return StatusCode::NOT_FOUND.into_response() };
    (
        [(header::CONTENT_TYPE, file.content_type.to_string()), (header::CONTENT_LENGTH, file.bytes.len().to_string())],
        file.bytes,
    )
        .into_response()
}

/// Chunks of zeros forever, without a `Content-Length`.
async fn endless() -> Response {
    let chunk = Bytes::from(vec![0u8; 64 * 1024]);
    let stream = futures::stream::repeat_with(move || Ok::<_, Infallible>(chunk.clone()));
    ([(header::CONTENT_TYPE, "application/octet-stream")], Body::from_stream(stream)).into_response()
}

#[derive(Deserialize)]
struct RedirectTo {
    to: String,
}

async fn redirect(Query(RedirectTo { to }): Query<RedirectTo>) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

/// A second of a sine tone, 16 kHz mono 16-bit.
fn wav(frequency: f32) -> Bytes {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut out, spec).expect("a WAV writer");
    for n in 0..spec.sample_rate {
        let t = n as f32 / spec.sample_rate as f32;
        let sample = (t * frequency * std::f32::consts::TAU).sin() * f32::from(i16::MAX / 4);
        writer.write_sample(sample as i16).expect("a WAV sample");
    }
    writer.finalize().expect("a finished WAV");
    Bytes::from(out.into_inner())
}

fn picture(seed: u8) -> RgbaImage {
    RgbaImage::from_fn(64, 64, |x, y| Rgba([seed, (x * 4) as u8, (y * 4) as u8, 255]))
}

fn png(seed: u8) -> Bytes {
    let mut out = Cursor::new(Vec::new());
    picture(seed).write_to(&mut out, ImageFormat::Png).expect("a PNG");
    Bytes::from(out.into_inner())
}

/// Three frames of 100 ms, looping.
fn gif(seed: u8) -> Bytes {
    let mut out = Vec::new();
    {
        let mut encoder = GifEncoder::new_with_speed(&mut out, 30);
        encoder.set_repeat(Repeat::Infinite).expect("a looping GIF");
        let frames = (0..3u8)
            .map(|n| Frame::from_parts(picture(seed.wrapping_add(n * 80)), 0, 0, Delay::from_numer_denom_ms(100, 1)));
        encoder.encode_frames(frames).expect("a GIF");
    }
    Bytes::from(out)
}
