//! The embedded default's image-to-video: turns a still into a short animated GIF locally, with no
//! network and no video model, so `cutx dev` and the tests can complete image-to-video jobs
//! without a provider.
//!
//! Promises:
//! - a PNG, a JPEG or a GIF (its first frame) is read, the format told by its bytes; anything
//!   else is [`MotionError::Decode`];
//! - the clip is a GIF that loops forever, 10 frames a second for `duration_seconds` (clamped to
//!   1–10), so `frames` is ten times the clamped duration;
//! - it is the source's aspect ratio (to the pixel), its longest side `max_side` (clamped to
//!   16–4096) or the source's own when that is smaller: a clip is never upscaled;
//! - the camera zooms slowly in (to 1.2×) while panning, then back out along the same path, so
//!   consecutive frames differ and the last frame leads smoothly into the first;
//! - every frame is drawn in one fixed palette of 252 colours with ordered dithering: the GIF
//!   encoder then has no per-frame quantizing to do, so a 5-second clip of 320 pixels takes about
//!   half a second;
//! - the same input gives the same bytes.

use image::codecs::gif::{GifEncoder, Repeat};
use image::imageops::FilterType;
use image::{Delay, DynamicImage, Frame, RgbaImage};

/// An animated GIF and the size and frame count it decodes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    pub gif: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub frames: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum MotionError {
    #[error("the source image cannot be read: {0}")]
    Decode(#[source] image::ImageError),
    #[error("the clip cannot be encoded as a gif: {0}")]
    Encode(#[source] image::ImageError),
}

/// Animates `image` into a clip of `duration_seconds` whose longest side is at most `max_side`.
pub fn animate(image: &[u8], duration_seconds: u32, max_side: u32) -> Result<Clip, MotionError> {
    let source = image::load_from_memory(image).map_err(MotionError::Decode)?;
    let frames = duration_seconds.clamp(1, MAX_SECONDS) * FRAMES_PER_SECOND;
    let (width, height) = fit(source.width(), source.height(), max_side.clamp(MIN_SIDE, MAX_SIDE));
    let camera = Camera::over(&source, width, height);
    let palette = Palette::new();

    let mut gif = Vec::new();
    let mut encoder = GifEncoder::new_with_speed(&mut gif, FALLBACK_QUANTIZER_SPEED);
    encoder.set_repeat(Repeat::Infinite).map_err(MotionError::Encode)?;
    for index in 0..frames {
        let mut shot = camera.shoot(ping_pong(index, frames), width, height);
        palette.dither(&mut shot);
        let frame = Frame::from_parts(shot, 0, 0, Delay::from_numer_denom_ms(FRAME_MS, 1));
        encoder.encode_frame(frame).map_err(MotionError::Encode)?;
    }
    drop(encoder);
    Ok(Clip { gif, width, height, frames })
}

const FRAMES_PER_SECOND: u32 = 10;
const FRAME_MS: u32 = 1000 / FRAMES_PER_SECOND;
const MAX_SECONDS: u32 = 10;
const MIN_SIDE: u32 = 16;
/// Far below the GIF limit of 65,535, and more than any clip preview needs.
const MAX_SIDE: u32 = 4096;
/// The GIF encoder quantizes a frame with NeuQuant only when it has more than 256 colours, which
/// the dithered frames never have; should that change, this is NeuQuant's fastest setting.
const FALLBACK_QUANTIZER_SPEED: i32 = 30;
const ZOOM: f64 = 1.2;
/// The camera looks at a copy of the source at least twice the clip's size and at least this many
/// pixels on its longest side, so that moving the crop by one pixel is at most half a pixel of
/// the clip and even a slow zoom changes every frame.
const MIN_FILM_SIDE: u32 = 640;

/// The size whose longest side is `max_side` (or the source's, when smaller) with the source's
/// aspect ratio, rounded to whole pixels.
fn fit(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= max_side {
        return (width, height);
    }
    let scale = |side: u32| (u64::from(side) * u64::from(max_side) + u64::from(longest) / 2) / u64::from(longest);
    (scale(width).max(1) as u32, scale(height).max(1) as u32)
}

/// 0 at the first frame, 1 half way through, back towards 0 at the last: the loop has no jump.
fn ping_pong(index: u32, frames: u32) -> f64 {
    let t = f64::from(index) / f64::from(frames);
    1.0 - (2.0 * t - 1.0).abs()
}

/// The source scaled to a whole multiple of the clip's size, which the crop moves over.
struct Camera {
    film: DynamicImage,
}

impl Camera {
    fn over(source: &DynamicImage, width: u32, height: u32) -> Self {
        let multiple = MIN_FILM_SIDE.div_ceil(width.max(height)).max(2);
        let film = source.resize_exact(width * multiple, height * multiple, FilterType::Triangle);
        // RGBA throughout: the image crate's resizers are fastest on it.
        Self { film: DynamicImage::ImageRgba8(film.into_rgba8()) }
    }

    /// The frame at `t` in 0..=1: zoomed by 1..=ZOOM, the crop moving from left of centre and
    /// low to right of centre and high as it zooms in.
    fn shoot(&self, t: f64, width: u32, height: u32) -> RgbaImage {
        let (film_w, film_h) = (self.film.width(), self.film.height());
        let zoom = 1.0 + (ZOOM - 1.0) * t;
        let crop_w = ((f64::from(film_w) / zoom).round() as u32).clamp(1, film_w);
        let crop_h = ((f64::from(film_h) / zoom).round() as u32).clamp(1, film_h);
        let (pan_x, pan_y) = (0.3 + 0.4 * t, 0.6 - 0.2 * t);
        let x = (f64::from(film_w - crop_w) * pan_x).round() as u32;
        let y = (f64::from(film_h - crop_h) * pan_y).round() as u32;
        // The crop is always at least 1.6 times the frame: an area average is enough, and fast.
        self.film.crop_imm(x, y, crop_w, crop_h).thumbnail_exact(width, height).into_rgba8()
    }
}

/// 6 levels of red, 7 of green and 6 of blue: 252 colours, so the GIF encoder takes every frame's
/// colours as they are instead of running NeuQuant on each (the slowest step by far).
const LEVELS: [u32; 3] = [6, 7, 6];
/// A 4x4 Bayer matrix: the order in which the pixels of a block round up.
const BAYER: [u8; 16] = [0, 8, 2, 10, 12, 4, 14, 6, 3, 11, 1, 9, 15, 7, 13, 5];

/// Ordered dithering to the fixed palette, by table: per channel and Bayer threshold, the
/// palette value each of the 256 input values becomes.
struct Palette {
    tables: Vec<[[u8; 256]; 16]>,
}

impl Palette {
    fn new() -> Self {
        let tables = LEVELS
            .iter()
            .map(|&levels| {
                let top = levels - 1;
                let mut table = [[0u8; 256]; 16];
                for (threshold, row) in table.iter_mut().enumerate() {
                    let offset = (2 * threshold as u32 + 1) * 255 / 2;
                    for (value, out) in row.iter_mut().enumerate() {
                        let level = ((value as u32 * top * 16 + offset) / (255 * 16)).min(top);
                        *out = ((level * 255 + top / 2) / top) as u8;
                    }
                }
                table
            })
            .collect();
        Self { tables }
    }

    fn dither(&self, frame: &mut RgbaImage) {
        let row_len = frame.width() as usize * 4;
        let [red, green, blue] = [&self.tables[0], &self.tables[1], &self.tables[2]];
        for (y, row) in frame.chunks_exact_mut(row_len).enumerate() {
            let thresholds = &BAYER[(y % 4) * 4..][..4];
            for (x, pixel) in row.chunks_exact_mut(4).enumerate() {
                let t = thresholds[x % 4] as usize;
                pixel[0] = red[t][pixel[0] as usize];
                pixel[1] = green[t][pixel[1] as usize];
                pixel[2] = blue[t][pixel[2] as usize];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::gif::GifDecoder;
    use image::{AnimationDecoder, ImageFormat, RgbImage};
    use std::io::Cursor;

    /// A picture with detail everywhere, so any movement of the camera shows.
    fn picture(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
        let image = RgbImage::from_fn(width, height, |x, y| {
            let checker = if (x / 16 + y / 16) % 2 == 0 { 40 } else { 0 };
            image::Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 120 + checker])
        });
        let mut bytes = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(image).write_to(&mut bytes, format).expect("an in-memory image");
        bytes.into_inner()
    }

    fn frames_of(clip: &Clip) -> Vec<Frame> {
        let decoder = GifDecoder::new(Cursor::new(&clip.gif)).expect("a valid gif");
        decoder.into_frames().collect_frames().expect("decodable frames")
    }

    #[test]
    fn a_png_becomes_a_looping_gif_of_ten_frames_a_second() {
        let clip = animate(&picture(640, 400, ImageFormat::Png), 5, 320).expect("a clip");
        let frames = frames_of(&clip);
        assert_eq!(clip.frames, 50);
        assert_eq!(frames.len(), 50);
        for frame in &frames {
            assert_eq!(frame.delay().numer_denom_ms(), (100, 1));
            assert_eq!(frame.buffer().dimensions(), (clip.width, clip.height));
        }
        assert!(clip.gif.windows(11).any(|w| w == b"NETSCAPE2.0"), "no loop extension");
    }

    #[test]
    fn the_clip_keeps_the_aspect_ratio_within_max_side() {
        let clip = animate(&picture(640, 400, ImageFormat::Png), 1, 320).expect("a clip");
        assert_eq!((clip.width, clip.height), (320, 200));
        let portrait = animate(&picture(300, 500, ImageFormat::Png), 1, 100).expect("a clip");
        assert_eq!((portrait.width, portrait.height), (60, 100));
        let (w, h) = frames_of(&portrait)[0].buffer().dimensions();
        assert_eq!((w, h), (60, 100));
    }

    #[test]
    fn a_small_source_is_not_upscaled() {
        let clip = animate(&picture(120, 90, ImageFormat::Png), 1, 320).expect("a clip");
        assert_eq!((clip.width, clip.height), (120, 90));
    }

    #[test]
    fn consecutive_frames_differ_including_the_loop_back_to_the_first() {
        let frames = frames_of(&animate(&picture(640, 400, ImageFormat::Png), 5, 320).expect("a clip"));
        for (i, pair) in frames.windows(2).enumerate() {
            assert_ne!(pair[0].buffer(), pair[1].buffer(), "frames {i} and {}", i + 1);
        }
        assert_ne!(frames.last().expect("frames").buffer(), frames[0].buffer());
    }

    #[test]
    fn every_frame_keeps_to_the_fixed_palette() {
        let frames = frames_of(&animate(&picture(640, 400, ImageFormat::Png), 1, 320).expect("a clip"));
        let palette: Vec<[u8; 3]> = (0..6u32)
            .flat_map(|r| (0..7u32).flat_map(move |g| (0..6u32).map(move |b| [r, g, b])))
            .map(|[r, g, b]| [(r * 255 + 2) / 5, (g * 255 + 3) / 6, (b * 255 + 2) / 5].map(|v| v as u8))
            .collect();
        for frame in &frames {
            assert!(frame.buffer().pixels().all(|p| palette.contains(&[p[0], p[1], p[2]])));
        }
    }

    #[test]
    fn dithering_keeps_the_average_colour_of_a_block() {
        for colour in [[0, 0, 0], [255, 255, 255], [100, 150, 200], [17, 240, 128]] {
            let mut flat = RgbaImage::from_pixel(8, 8, image::Rgba([colour[0], colour[1], colour[2], 255]));
            Palette::new().dither(&mut flat);
            for c in 0..3 {
                let mean = flat.pixels().map(|p| f64::from(p[c])).sum::<f64>() / 64.0;
                assert!((mean - f64::from(colour[c])).abs() <= 4.0, "{colour:?} channel {c}: {mean}");
            }
        }
    }

    #[test]
    fn the_duration_is_clamped_to_one_to_ten_seconds() {
        let png = picture(64, 48, ImageFormat::Png);
        assert_eq!(animate(&png, 0, 64).expect("a clip").frames, 10);
        let long = animate(&png, 60, 64).expect("a clip");
        assert_eq!(long.frames, 100);
        assert_eq!(frames_of(&long).len(), 100);
    }

    #[test]
    fn a_jpeg_works_too() {
        let clip = animate(&picture(400, 400, ImageFormat::Jpeg), 2, 200).expect("a clip");
        assert_eq!((clip.width, clip.height, clip.frames), (200, 200, 20));
        assert_eq!(frames_of(&clip).len(), 20);
    }

    #[test]
    fn something_that_is_not_an_image_is_a_decode_error() {
        for bytes in [&b"not an image at all"[..], &[], b"\x89PNG\r\n\x1a\ntruncated"] {
            assert!(matches!(animate(bytes, 5, 320), Err(MotionError::Decode(_))), "{bytes:?}");
        }
    }

    #[test]
    fn the_same_input_gives_the_same_bytes() {
        let png = picture(200, 100, ImageFormat::Png);
        assert_eq!(animate(&png, 2, 160).expect("a clip"), animate(&png, 2, 160).expect("a clip"));
    }

    #[test]
    fn five_seconds_at_320_pixels_take_well_under_a_second() {
        let png = picture(1280, 720, ImageFormat::Png);
        let started = std::time::Instant::now();
        animate(&png, 5, 320).expect("a clip");
        let took = started.elapsed();
        // Generous for an unoptimised build of this crate; image and gif are optimised in dev.
        assert!(took < std::time::Duration::from_secs(3), "{took:?}");
    }
}
