//! The embedded default's reframe: fits an image or an animated GIF to an aspect ratio locally,
//! with no network, so `cutx dev` and the tests can complete reframe jobs without a provider.
//!
//! Promises:
//! - a PNG or JPEG becomes a PNG; a GIF becomes a GIF that loops forever, with the same number
//!   of frames and the same delays (an animated PNG becomes a still of its first frame);
//! - the output's width:height is exactly `aspect.ratio()`, and its longest side is at most
//!   `max_side` (clamped to 16–4096) and never more than the ratio needs to hold the source;
//! - when the ratio is close to the source's (cropping would lose at most a tenth of the
//!   picture) the centre is cropped; otherwise the whole source is centred, scaled to fit, over
//!   a blurred and darkened copy of itself stretched to fill the frame;
//! - video (MP4, QuickTime, WebM/Matroska, AVI, FLV, MPEG, MPEG-TS, Windows Media, told by their
//!   magic bytes) is refused with [`ReframeError::NeedsProvider`], anything else that is not a
//!   readable PNG, JPEG or GIF (a GIF without frames included) with [`ReframeError::Decode`]:
//!   both are final, a retry gives the same answer;
//! - the same input gives the same bytes.

use std::io::Cursor;

use cutx_platform::aspect::AspectRatio;
use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::error::DecodingError;
use image::imageops::FilterType;
use image::{AnimationDecoder, DynamicImage, Frame, ImageDecoder, ImageError, ImageFormat, RgbaImage};

/// A reframed file, with what to store it as and the size it decodes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reframed {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub extension: &'static str,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ReframeError {
    #[error("the source cannot be read as a png, jpeg or gif: {0}")]
    Decode(#[source] image::ImageError),
    #[error("{0} video cannot be reframed locally: video formats other than animated gif need a provider")]
    NeedsProvider(&'static str),
    #[error("the reframed image cannot be encoded: {0}")]
    Encode(#[source] image::ImageError),
}

/// Reframes `source` to `aspect`, its longest side at most `max_side`.
pub fn reframe(source: &[u8], aspect: AspectRatio, max_side: u32) -> Result<Reframed, ReframeError> {
    let max_side = max_side.clamp(MIN_SIDE, MAX_SIDE);
    match image::guess_format(source) {
        Ok(ImageFormat::Gif) => reframe_gif(source, aspect, max_side),
        Ok(_) => reframe_still(source, aspect, max_side),
        Err(unknown) => match video_container(source) {
            Some(container) => Err(ReframeError::NeedsProvider(container)),
            None => Err(ReframeError::Decode(unknown)),
        },
    }
}

/// 16:9 needs 16 pixels.
const MIN_SIDE: u32 = 16;
const MAX_SIDE: u32 = 4096;
/// Cropping keeps at least this share of the source's area, or the source is padded instead.
const MIN_KEPT_BY_CROP: f64 = 0.9;
/// The padding is the source shrunk to this many pixels on its longest side and stretched back:
/// a blur of any strength for the cost of two small resizes.
const BLUR_SIDE: u32 = 12;
/// The padding's brightness, so the picture stands out from it.
const PADDING_BRIGHTNESS: i32 = -60;
/// A GIF's frames are re-quantized one by one with NeuQuant (1 is best, 30 fastest): the user's
/// own animation deserves a better palette than a generated clip, and past 20 little time is won.
const QUANTIZER_SPEED: i32 = 20;

/// The container of a video by its magic bytes, if `bytes` are one; asked only of bytes that
/// are no image format (a GIF also starts with 0x47).
fn video_container(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [_, _, _, _, b'f', b't', b'y', b'p', brand @ ..] if brand.starts_with(b"qt") => Some("QuickTime"),
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => Some("MP4"),
        [0x1a, 0x45, 0xdf, 0xa3, ..] => Some("WebM/Matroska"),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'A', b'V', b'I', b' ', ..] => Some("AVI"),
        [b'F', b'L', b'V', 0x01, ..] => Some("FLV"),
        [0x00, 0x00, 0x01, 0xba | 0xb3, ..] => Some("MPEG"),
        // A transport stream has no header, only a sync byte every 188 bytes.
        [0x47, ..] if bytes.len() > 376 && bytes[188] == 0x47 && bytes[376] == 0x47 => Some("MPEG-TS"),
        [0x30, 0x26, 0xb2, 0x75, 0x8e, 0x66, 0xcf, 0x11, ..] => Some("Windows Media"),
        _ => None,
    }
}

fn reframe_still(source: &[u8], aspect: AspectRatio, max_side: u32) -> Result<Reframed, ReframeError> {
    let image = image::load_from_memory(source).map_err(ReframeError::Decode)?;
    let layout = Layout::plan(image.width(), image.height(), aspect, max_side);
    let framed = layout.apply(&image);
    let mut png = Cursor::new(Vec::new());
    framed.write_to(&mut png, ImageFormat::Png).map_err(ReframeError::Encode)?;
    Ok(Reframed {
        bytes: png.into_inner(),
        content_type: "image/png",
        extension: "png",
        width: layout.width,
        height: layout.height,
    })
}

/// Frame by frame, so only one frame of the source is in memory at a time.
fn reframe_gif(source: &[u8], aspect: AspectRatio, max_side: u32) -> Result<Reframed, ReframeError> {
    let decoder = GifDecoder::new(Cursor::new(source)).map_err(ReframeError::Decode)?;
    let (source_w, source_h) = decoder.dimensions();
    let layout = Layout::plan(source_w, source_h, aspect, max_side);
    let mut gif = Vec::new();
    let mut encoder = GifEncoder::new_with_speed(&mut gif, QUANTIZER_SPEED);
    encoder.set_repeat(Repeat::Infinite).map_err(ReframeError::Encode)?;
    let mut frames = 0usize;
    for frame in decoder.into_frames() {
        let frame = frame.map_err(ReframeError::Decode)?;
        let delay = frame.delay();
        let framed = layout.apply(&DynamicImage::ImageRgba8(frame.into_buffer()));
        encoder.encode_frame(Frame::from_parts(framed, 0, 0, delay)).map_err(ReframeError::Encode)?;
        frames += 1;
    }
    drop(encoder);
    // The encoder writes nothing, not even a header, until its first frame.
    if frames == 0 {
        return Err(ReframeError::Decode(ImageError::Decoding(DecodingError::new(
            ImageFormat::Gif.into(),
            "the gif has no frames",
        ))));
    }
    Ok(Reframed { bytes: gif, content_type: "image/gif", extension: "gif", width: layout.width, height: layout.height })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rect {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
}

/// How every frame of one source is reframed: the output size and either the part of the
/// source that fills it or where in it the whole source goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    width: u32,
    height: u32,
    fill: Fill,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// This part of the source, scaled to the output.
    Crop(Rect),
    /// The whole source, scaled into this part of the output.
    Pad(Rect),
}

impl Layout {
    fn plan(source_w: u32, source_h: u32, aspect: AspectRatio, max_side: u32) -> Self {
        let (rw, rh) = aspect.ratio();
        let max_multiple = (max_side / rw.max(rh)).max(1);
        let crop = centred_crop(source_w, source_h, rw, rh);
        let kept = f64::from(crop.w) * f64::from(crop.h) / (f64::from(source_w) * f64::from(source_h));
        if kept >= MIN_KEPT_BY_CROP {
            let multiple = (crop.w / rw).clamp(1, max_multiple);
            return Self { width: multiple * rw, height: multiple * rh, fill: Fill::Crop(crop) };
        }
        let multiple = source_w.div_ceil(rw).max(source_h.div_ceil(rh)).min(max_multiple);
        let (width, height) = (multiple * rw, multiple * rh);
        let scale = (f64::from(width) / f64::from(source_w)).min(f64::from(height) / f64::from(source_h));
        let w = ((f64::from(source_w) * scale).round() as u32).clamp(1, width);
        let h = ((f64::from(source_h) * scale).round() as u32).clamp(1, height);
        Self { width, height, fill: Fill::Pad(Rect { x: (width - w) / 2, y: (height - h) / 2, w, h }) }
    }

    fn apply(&self, image: &DynamicImage) -> RgbaImage {
        match self.fill {
            Fill::Crop(crop) => image
                .crop_imm(crop.x, crop.y, crop.w, crop.h)
                .resize_exact(self.width, self.height, FilterType::Triangle)
                .into_rgba8(),
            Fill::Pad(place) => {
                let mut canvas = self.padding(image);
                let picture = image.resize_exact(place.w, place.h, FilterType::Triangle).into_rgba8();
                image::imageops::overlay(&mut canvas, &picture, i64::from(place.x), i64::from(place.y));
                canvas
            }
        }
    }

    /// The source cropped to the output's ratio, blurred and darkened, at the output's size.
    fn padding(&self, image: &DynamicImage) -> RgbaImage {
        let cover = centred_crop(image.width(), image.height(), self.width, self.height);
        let blur_w = (BLUR_SIDE * self.width / self.width.max(self.height)).max(1);
        let blur_h = (BLUR_SIDE * self.height / self.width.max(self.height)).max(1);
        image
            .crop_imm(cover.x, cover.y, cover.w, cover.h)
            .resize_exact(blur_w, blur_h, FilterType::Triangle)
            .brighten(PADDING_BRIGHTNESS)
            .resize_exact(self.width, self.height, FilterType::Triangle)
            .into_rgba8()
    }
}

/// The largest centred part of a `width` x `height` image with the ratio `rw`:`rh`, rounded to
/// whole pixels.
fn centred_crop(width: u32, height: u32, rw: u32, rh: u32) -> Rect {
    let wider = u64::from(width) * u64::from(rh) > u64::from(height) * u64::from(rw);
    let (w, h) = if wider {
        let w = (u64::from(height) * u64::from(rw) + u64::from(rh) / 2) / u64::from(rh);
        ((w as u32).clamp(1, width), height)
    } else {
        let h = (u64::from(width) * u64::from(rh) + u64::from(rw) / 2) / u64::from(rw);
        (width, (h as u32).clamp(1, height))
    };
    Rect { x: (width - w) / 2, y: (height - h) / 2, w, h }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Delay, Rgba};

    fn encoded(image: RgbaImage, format: ImageFormat) -> Vec<u8> {
        let mut bytes = Cursor::new(Vec::new());
        let image = match format {
            ImageFormat::Jpeg => DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(image).into_rgb8()),
            _ => DynamicImage::ImageRgba8(image),
        };
        image.write_to(&mut bytes, format).expect("an in-memory image");
        bytes.into_inner()
    }

    /// Left half red, right half blue.
    fn halves(width: u32, height: u32) -> RgbaImage {
        RgbaImage::from_fn(
            width,
            height,
            |x, _| if x < width / 2 { Rgba([220, 0, 0, 255]) } else { Rgba([0, 0, 220, 255]) },
        )
    }

    const DELAYS_MS: [u32; 3] = [100, 200, 500];

    /// Three frames of different colours with different delays.
    fn animated_gif(width: u32, height: u32) -> Vec<u8> {
        let mut gif = Vec::new();
        let mut encoder = GifEncoder::new(&mut gif);
        encoder.set_repeat(Repeat::Infinite).expect("a repeat");
        for (i, ms) in DELAYS_MS.into_iter().enumerate() {
            let shade = 60 + 80 * i as u8;
            let buffer = RgbaImage::from_fn(width, height, |x, y| Rgba([shade, (x % 256) as u8, (y % 256) as u8, 255]));
            let frame = Frame::from_parts(buffer, 0, 0, Delay::from_numer_denom_ms(ms, 1));
            encoder.encode_frame(frame).expect("a frame");
        }
        drop(encoder);
        gif
    }

    fn has_ratio(width: u32, height: u32, aspect: AspectRatio) -> bool {
        let (rw, rh) = aspect.ratio();
        width * rh == height * rw
    }

    fn gif_frames(bytes: &[u8]) -> Vec<Frame> {
        let decoder = GifDecoder::new(Cursor::new(bytes)).expect("a valid gif");
        decoder.into_frames().collect_frames().expect("decodable frames")
    }

    #[test]
    fn a_png_becomes_a_png_of_exactly_each_ratio_within_max_side() {
        let png = encoded(halves(300, 200), ImageFormat::Png);
        for aspect in AspectRatio::ALL {
            for max_side in [1080, 256, 100] {
                let out = reframe(&png, aspect, max_side).expect("reframed");
                assert_eq!((out.content_type, out.extension), ("image/png", "png"));
                let decoded = image::load_from_memory_with_format(&out.bytes, ImageFormat::Png).expect("a png");
                assert_eq!((decoded.width(), decoded.height()), (out.width, out.height), "{aspect} {max_side}");
                assert!(has_ratio(out.width, out.height, aspect), "{aspect}: {}x{}", out.width, out.height);
                assert!(out.width.max(out.height) <= max_side, "{aspect} {max_side}");
            }
        }
    }

    #[test]
    fn the_output_is_no_bigger_than_the_ratio_needs_to_hold_the_source() {
        let png = encoded(halves(300, 200), ImageFormat::Png);
        let square = reframe(&png, AspectRatio::Square, 1080).expect("reframed");
        assert_eq!((square.width, square.height), (300, 300));
        let tall = reframe(&png, AspectRatio::Portrait9x16, 1080).expect("reframed");
        assert_eq!((tall.width, tall.height), (306, 544));
    }

    #[test]
    fn a_far_ratio_pads_the_whole_source_over_a_darker_background() {
        let png = encoded(halves(300, 200), ImageFormat::Png);
        let out = reframe(&png, AspectRatio::Portrait9x16, 1080).expect("reframed");
        let decoded = image::load_from_memory(&out.bytes).expect("a png").into_rgba8();
        let (w, h) = decoded.dimensions();
        let centre_left = decoded.get_pixel(w / 8, h / 2);
        let centre_right = decoded.get_pixel(w * 7 / 8, h / 2);
        assert!(centre_left[0] > 200 && centre_left[2] < 20, "{centre_left:?}");
        assert!(centre_right[2] > 200 && centre_right[0] < 20, "{centre_right:?}");
        let top = decoded.get_pixel(w / 2, 2);
        assert!(top[0] < 200 && top[2] < 200, "padding {top:?} is not darker than the picture");
        assert_eq!(top[3], 255);
    }

    #[test]
    fn a_near_ratio_crops_the_centre_instead_of_padding() {
        let png = encoded(halves(340, 200), ImageFormat::Png);
        let out = reframe(&png, AspectRatio::Landscape16x9, 1080).expect("reframed");
        assert!(has_ratio(out.width, out.height, AspectRatio::Landscape16x9));
        let decoded = image::load_from_memory(&out.bytes).expect("a png").into_rgba8();
        for y in [0, out.height - 1] {
            assert_eq!(*decoded.get_pixel(0, y), Rgba([220, 0, 0, 255]), "row {y}");
            assert_eq!(*decoded.get_pixel(out.width - 1, y), Rgba([0, 0, 220, 255]), "row {y}");
        }
    }

    #[test]
    fn a_jpeg_becomes_a_png_too() {
        let jpeg = encoded(halves(300, 200), ImageFormat::Jpeg);
        let out = reframe(&jpeg, AspectRatio::Portrait4x5, 500).expect("reframed");
        assert_eq!(out.content_type, "image/png");
        assert!(out.bytes.starts_with(b"\x89PNG"));
        assert!(has_ratio(out.width, out.height, AspectRatio::Portrait4x5));
    }

    #[test]
    fn an_animated_gif_stays_animated_with_its_frames_and_delays_at_each_ratio() {
        let gif = animated_gif(120, 80);
        for aspect in AspectRatio::ALL {
            let out = reframe(&gif, aspect, 200).expect("reframed");
            assert_eq!((out.content_type, out.extension), ("image/gif", "gif"));
            let frames = gif_frames(&out.bytes);
            assert_eq!(frames.len(), DELAYS_MS.len(), "{aspect}");
            for (frame, ms) in frames.iter().zip(DELAYS_MS) {
                assert_eq!(frame.delay().numer_denom_ms(), (ms, 1), "{aspect}");
                assert_eq!(frame.buffer().dimensions(), (out.width, out.height), "{aspect}");
            }
            assert!(has_ratio(out.width, out.height, aspect), "{aspect}: {}x{}", out.width, out.height);
            assert!(out.width.max(out.height) <= 200, "{aspect}");
            assert_ne!(frames[0].buffer(), frames[1].buffer(), "{aspect}");
        }
    }

    #[test]
    fn video_is_refused_as_needing_a_provider() {
        let mp4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2mp41";
        let mov = b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ";
        let webm = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01";
        let avi = b"RIFF\x00\x10\x00\x00AVI LIST";
        for (bytes, container) in [(&mp4[..], "MP4"), (mov, "QuickTime"), (webm, "WebM/Matroska"), (avi, "AVI")] {
            let refused = reframe(bytes, AspectRatio::Square, 1080).expect_err("video");
            assert!(matches!(refused, ReframeError::NeedsProvider(c) if c == container), "{refused}");
            assert!(refused.to_string().contains("need a provider"), "{refused}");
        }
    }

    #[test]
    fn garbage_and_truncated_images_cannot_be_read() {
        let png = encoded(halves(300, 200), ImageFormat::Png);
        let gif = animated_gif(40, 40);
        for bytes in [&b"definitely not media"[..], &[], &png[..40], &gif[..30]] {
            let refused = reframe(bytes, AspectRatio::Square, 1080).expect_err("garbage");
            assert!(matches!(refused, ReframeError::Decode(_)), "{refused}");
        }
    }

    #[test]
    fn a_gif_without_frames_cannot_be_read() {
        let empty = b"GIF89a\x10\x00\x10\x00\x00\x00\x00\x3b";
        let refused = reframe(empty, AspectRatio::Square, 1080).expect_err("no frames");
        assert!(matches!(refused, ReframeError::Decode(_)), "{refused}");
    }

    #[test]
    fn the_same_input_gives_the_same_bytes() {
        let png = encoded(halves(300, 200), ImageFormat::Png);
        let first = reframe(&png, AspectRatio::Portrait4x5, 1080).expect("reframed");
        assert_eq!(first, reframe(&png, AspectRatio::Portrait4x5, 1080).expect("reframed"));
    }

    #[test]
    fn a_photo_reframes_to_9_16_at_1080_quickly() {
        let png = encoded(halves(1920, 1080), ImageFormat::Png);
        let started = std::time::Instant::now();
        let out = reframe(&png, AspectRatio::Portrait9x16, 1080).expect("reframed");
        let took = started.elapsed();
        assert_eq!((out.width, out.height), (603, 1072));
        assert!(took < std::time::Duration::from_secs(3), "{took:?}");
    }
}
