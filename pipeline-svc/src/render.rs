//! The embedded default's static-ad renderer: draws an ad locally, with no network and no system
//! fonts, so `cutx dev` and the tests can complete static-ad jobs without an image provider.
//!
//! Promises:
//! - the PNG (RGB8) is exactly `aspect.dimensions()` in size;
//! - the same prompt, style and ratio give the same bytes;
//! - every prompt renders: characters without a glyph in the 8x8 bitmap font are drawn as `?`,
//!   the headline shrinks until it fits its area and, if even the smallest size overflows, is cut
//!   short with `...`, so no text is drawn outside the headline area.

use cutx_platform::aspect::AspectRatio;
use cutx_proto::pb::StaticAdStyle;
use font8x8::UnicodeFonts;

/// A rendered ad: PNG bytes and the size they decode to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedImage {
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// Draws an ad: a gradient in the style's palette, the prompt as a word-wrapped headline and a
/// "SHOP NOW" button near the bottom.
pub fn render_static_ad(prompt: &str, style: StaticAdStyle, aspect: AspectRatio) -> RenderedImage {
    let (width, height) = aspect.dimensions();
    let palette = Palette::of(style);
    let mut canvas = Canvas::new(width as usize, height as usize);
    canvas.vertical_gradient(palette.top, palette.bottom);

    let frame = Frame::of(&canvas);
    let headline = Headline::lay_out(prompt, frame.headline);
    headline.draw(&mut canvas, frame.headline, palette.text);
    draw_button(&mut canvas, frame.button, &palette);

    RenderedImage { png: canvas.encode_png(), width, height }
}

type Rgb = [u8; 3];

/// The colours of one style. The gradient never reaches the text colour, so text pixels can be
/// told apart from the background.
struct Palette {
    top: Rgb,
    bottom: Rgb,
    text: Rgb,
    button: Rgb,
    button_text: Rgb,
}

impl Palette {
    fn of(style: StaticAdStyle) -> Self {
        match style {
            StaticAdStyle::Unspecified | StaticAdStyle::ProductHero => Self {
                top: [18, 32, 71],
                bottom: [44, 92, 168],
                text: [255, 255, 255],
                button: [255, 183, 3],
                button_text: [18, 32, 71],
            },
            StaticAdStyle::Lifestyle => Self {
                top: [194, 94, 64],
                bottom: [247, 183, 140],
                text: [255, 250, 240],
                button: [46, 64, 54],
                button_text: [255, 250, 240],
            },
            StaticAdStyle::Minimal => Self {
                top: [250, 250, 248],
                bottom: [226, 228, 232],
                text: [24, 24, 27],
                button: [24, 24, 27],
                button_text: [250, 250, 248],
            },
            StaticAdStyle::Bold => Self {
                top: [220, 20, 60],
                bottom: [120, 0, 30],
                text: [255, 236, 0],
                button: [0, 0, 0],
                button_text: [255, 236, 0],
            },
            StaticAdStyle::Seasonal => Self {
                top: [10, 80, 50],
                bottom: [150, 20, 30],
                text: [255, 255, 255],
                button: [212, 175, 55],
                button_text: [10, 60, 40],
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rect {
    x: usize,
    y: usize,
    w: usize,
    h: usize,
}

/// Where the headline and the button go: a margin of 1/12 of the short side all round, the
/// button (1/9 of the short side tall) at the bottom, the headline above it.
struct Frame {
    headline: Rect,
    button: Rect,
}

impl Frame {
    fn of(canvas: &Canvas) -> Self {
        let short = canvas.width.min(canvas.height);
        let margin = short / 12;
        let button_h = short / 9;
        let button_w = BUTTON_LABEL.len() * GLYPH * button_scale(button_h) + button_h;
        let button =
            Rect { x: (canvas.width - button_w) / 2, y: canvas.height - margin - button_h, w: button_w, h: button_h };
        let headline = Rect { x: margin, y: margin, w: canvas.width - 2 * margin, h: button.y - 2 * margin };
        Self { headline, button }
    }
}

const GLYPH: usize = 8;
/// A text line is the glyph plus two font pixels of leading.
const LINE: usize = GLYPH + 2;
const MAX_SCALE: usize = 12;
/// Below this the headline stops being readable on a phone; longer text is cut instead.
const MIN_SCALE: usize = 3;
const ELLIPSIS: &str = "...";
const BUTTON_LABEL: &str = "SHOP NOW";

fn button_scale(button_h: usize) -> usize {
    (button_h / (2 * GLYPH)).max(1)
}

/// The prompt broken into lines that fit a headline area at `scale`.
#[derive(Debug)]
struct Headline {
    scale: usize,
    lines: Vec<Vec<char>>,
}

impl Headline {
    /// The largest scale at which every word-wrapped line fits `area`; at `MIN_SCALE` the lines
    /// that do not fit are dropped and the last kept one ends with `...`.
    fn lay_out(prompt: &str, area: Rect) -> Self {
        let words: Vec<Vec<char>> =
            prompt.split_whitespace().map(|word| word.chars().map(drawable).collect()).collect();
        for scale in (MIN_SCALE..=MAX_SCALE).rev() {
            let (cols, rows) = capacity(area, scale);
            if cols == 0 {
                continue;
            }
            let lines = wrap(&words, cols);
            if lines.len() <= rows {
                return Self { scale, lines };
            }
        }
        let (cols, rows) = capacity(area, MIN_SCALE);
        if cols == 0 {
            return Self { scale: MIN_SCALE, lines: Vec::new() };
        }
        let mut lines = wrap(&words, cols);
        lines.truncate(rows);
        if let Some(last) = lines.last_mut() {
            let keep = cols.saturating_sub(ELLIPSIS.len()).min(last.len());
            last.truncate(keep);
            while last.last() == Some(&' ') {
                last.pop();
            }
            last.extend(ELLIPSIS.chars());
            last.truncate(cols);
        }
        Self { scale: MIN_SCALE, lines }
    }

    /// Centres the lines in `area`, each line on its own.
    fn draw(&self, canvas: &mut Canvas, area: Rect, colour: Rgb) {
        let s = self.scale;
        let block_h = (self.lines.len() * LINE * s).saturating_sub((LINE - GLYPH) * s);
        let mut y = area.y + area.h.saturating_sub(block_h) / 2;
        for line in &self.lines {
            let x = area.x + area.w.saturating_sub(line.len() * GLYPH * s) / 2;
            canvas.text(x, y, line.iter().copied(), s, colour);
            y += LINE * s;
        }
    }
}

/// How many characters per line and lines fit `area` at `scale`.
fn capacity(area: Rect, scale: usize) -> (usize, usize) {
    let cols = area.w / (GLYPH * scale);
    let rows = (area.h + (LINE - GLYPH) * scale) / (LINE * scale);
    (cols, rows)
}

/// Greedy word wrap to lines of at most `cols` (> 0) characters; a word longer than a line is
/// broken across lines.
fn wrap(words: &[Vec<char>], cols: usize) -> Vec<Vec<char>> {
    let mut lines = Vec::new();
    let mut line: Vec<char> = Vec::new();
    for word in words {
        for piece in word.chunks(cols) {
            if line.is_empty() {
                line.extend_from_slice(piece);
            } else if line.len() + 1 + piece.len() <= cols {
                line.push(' ');
                line.extend_from_slice(piece);
            } else {
                lines.push(std::mem::replace(&mut line, piece.to_vec()));
            }
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The character itself when the font has a visible glyph for it, else `?`.
fn drawable(c: char) -> char {
    if !c.is_control() && glyph(c).is_some() { c } else { '?' }
}

fn glyph(c: char) -> Option<[u8; 8]> {
    font8x8::BASIC_FONTS.get(c).or_else(|| font8x8::LATIN_FONTS.get(c))
}

fn draw_button(canvas: &mut Canvas, button: Rect, palette: &Palette) {
    canvas.fill_rect(button, palette.button);
    let scale = button_scale(button.h);
    let label_w = BUTTON_LABEL.len() * GLYPH * scale;
    let x = button.x + button.w.saturating_sub(label_w) / 2;
    let y = button.y + button.h.saturating_sub(GLYPH * scale) / 2;
    canvas.text(x, y, BUTTON_LABEL.chars(), scale, palette.button_text);
}

/// An RGB8 image in memory. Every drawing call clips to the canvas.
struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize) -> Self {
        Self { width, height, pixels: vec![0; width * height * 3] }
    }

    fn vertical_gradient(&mut self, top: Rgb, bottom: Rgb) {
        let last = (self.height - 1).max(1);
        for y in 0..self.height {
            let mix = |a: u8, b: u8| ((a as usize * (last - y) + b as usize * y) / last) as u8;
            let colour = [mix(top[0], bottom[0]), mix(top[1], bottom[1]), mix(top[2], bottom[2])];
            let row = &mut self.pixels[y * self.width * 3..(y + 1) * self.width * 3];
            fill(row, colour);
        }
    }

    fn fill_rect(&mut self, rect: Rect, colour: Rgb) {
        let x_end = (rect.x + rect.w).min(self.width);
        let y_end = (rect.y + rect.h).min(self.height);
        if rect.x >= x_end {
            return;
        }
        for y in rect.y..y_end {
            let start = (y * self.width + rect.x) * 3;
            let end = (y * self.width + x_end) * 3;
            fill(&mut self.pixels[start..end], colour);
        }
    }

    /// Draws `text` from (x, y), each font pixel a `scale` x `scale` square; runs of set bits in
    /// a glyph row are filled as one rectangle.
    fn text(&mut self, x: usize, y: usize, text: impl Iterator<Item = char>, scale: usize, colour: Rgb) {
        for (i, c) in text.enumerate() {
            let Some(rows) = glyph(c) else { continue };
            let left = x + i * GLYPH * scale;
            for (r, bits) in rows.iter().enumerate() {
                let mut col = 0;
                while col < GLYPH {
                    if bits & (1 << col) == 0 {
                        col += 1;
                        continue;
                    }
                    let run_start = col;
                    while col < GLYPH && bits & (1 << col) != 0 {
                        col += 1;
                    }
                    let run =
                        Rect { x: left + run_start * scale, y: y + r * scale, w: (col - run_start) * scale, h: scale };
                    self.fill_rect(run, colour);
                }
            }
        }
    }

    fn encode_png(&self) -> Vec<u8> {
        let mut png = Vec::new();
        let mut encoder = png::Encoder::new(&mut png, self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        // Writing to a Vec cannot fail, and the buffer matches the header by construction.
        let mut writer = encoder.write_header().expect("png header for an in-memory RGB8 image");
        writer.write_image_data(&self.pixels).expect("png data matching its header");
        writer.finish().expect("png trailer for an in-memory image");
        png
    }
}

/// Fills a run of RGB8 pixels by doubling copies, which stays fast without optimisations.
fn fill(pixels: &mut [u8], colour: Rgb) {
    if pixels.len() < 3 {
        return;
    }
    pixels[..3].copy_from_slice(&colour);
    let mut filled = 3;
    while filled < pixels.len() {
        let n = filled.min(pixels.len() - filled);
        pixels.copy_within(..n, filled);
        filled += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STYLES: [StaticAdStyle; 6] = [
        StaticAdStyle::Unspecified,
        StaticAdStyle::ProductHero,
        StaticAdStyle::Lifestyle,
        StaticAdStyle::Minimal,
        StaticAdStyle::Bold,
        StaticAdStyle::Seasonal,
    ];

    struct Decoded {
        width: usize,
        height: usize,
        pixels: Vec<u8>,
    }

    impl Decoded {
        fn of(image: &RenderedImage) -> Self {
            let decoder = png::Decoder::new(std::io::Cursor::new(&image.png));
            let mut reader = decoder.read_info().expect("a valid png");
            let mut pixels = vec![0; reader.output_buffer_size().expect("a sane size")];
            let info = reader.next_frame(&mut pixels).expect("one frame");
            assert_eq!((info.color_type, info.bit_depth), (png::ColorType::Rgb, png::BitDepth::Eight));
            pixels.truncate(info.buffer_size());
            Self { width: info.width as usize, height: info.height as usize, pixels }
        }

        fn count(&self, area: Rect, colour: Rgb) -> usize {
            (area.y..area.y + area.h)
                .flat_map(|y| (area.x..area.x + area.w).map(move |x| (x, y)))
                .filter(|&(x, y)| self.pixels[(y * self.width + x) * 3..][..3] == colour)
                .count()
        }
    }

    fn headline_area(aspect: AspectRatio) -> Rect {
        let (w, h) = aspect.dimensions();
        Frame::of(&Canvas::new(w as usize, h as usize)).headline
    }

    fn long_words_prompt() -> String {
        let mut prompt = String::new();
        while prompt.len() < 1000 {
            prompt.push_str("Incomprehensibilities ");
        }
        prompt.truncate(1000);
        prompt
    }

    #[test]
    fn every_ratio_decodes_to_its_dimensions() {
        for aspect in AspectRatio::ALL {
            let image = render_static_ad("Fresh cold brew, delivered", StaticAdStyle::ProductHero, aspect);
            let decoded = Decoded::of(&image);
            let (w, h) = aspect.dimensions();
            assert_eq!((image.width, image.height), (w, h), "{aspect}");
            assert_eq!((decoded.width, decoded.height), (w as usize, h as usize), "{aspect}");
        }
    }

    #[test]
    fn the_same_input_gives_identical_bytes() {
        let first = render_static_ad("Summer sale: 30% off", StaticAdStyle::Seasonal, AspectRatio::Portrait4x5);
        let second = render_static_ad("Summer sale: 30% off", StaticAdStyle::Seasonal, AspectRatio::Portrait4x5);
        assert_eq!(first, second);
    }

    #[test]
    fn different_prompts_give_different_pixels() {
        let a = Decoded::of(&render_static_ad("Summer sale", StaticAdStyle::Bold, AspectRatio::Square));
        let b = Decoded::of(&render_static_ad("Winter sale", StaticAdStyle::Bold, AspectRatio::Square));
        assert_ne!(a.pixels, b.pixels);
    }

    #[test]
    fn each_style_has_its_own_background() {
        let tops: Vec<Vec<u8>> = STYLES[1..]
            .iter()
            .map(|&style| Decoded::of(&render_static_ad("", style, AspectRatio::Square)).pixels[..3].to_vec())
            .collect();
        for (i, top) in tops.iter().enumerate() {
            assert!(!tops[i + 1..].contains(top), "style {:?} shares its colour", STYLES[i + 1]);
        }
        let unspecified = render_static_ad("x", StaticAdStyle::Unspecified, AspectRatio::Square);
        let product_hero = render_static_ad("x", StaticAdStyle::ProductHero, AspectRatio::Square);
        assert_eq!(unspecified, product_hero);
    }

    #[test]
    fn the_headline_is_drawn_in_the_text_colour_and_a_longer_one_draws_more() {
        for style in STYLES {
            let colour = Palette::of(style).text;
            let area = headline_area(AspectRatio::Square);
            let full = Decoded::of(&render_static_ad("Fresh cold brew, delivered", style, AspectRatio::Square));
            let short = Decoded::of(&render_static_ad("!", style, AspectRatio::Square));
            let blank = Decoded::of(&render_static_ad("  \n ", style, AspectRatio::Square));
            let (full, short, blank) = (full.count(area, colour), short.count(area, colour), blank.count(area, colour));
            assert!(full > short && short > blank, "{style:?}: {full} > {short} > {blank}");
            assert_eq!(blank, 0, "{style:?}");
        }
    }

    #[test]
    fn characters_without_a_glyph_are_drawn_as_question_marks() {
        let area = headline_area(AspectRatio::Square);
        let colour = Palette::of(StaticAdStyle::Minimal).text;
        let unknown = Decoded::of(&render_static_ad("価格 \u{7}", StaticAdStyle::Minimal, AspectRatio::Square));
        let marks = Decoded::of(&render_static_ad("?? ?", StaticAdStyle::Minimal, AspectRatio::Square));
        assert_eq!(unknown.pixels, marks.pixels);
        assert!(marks.count(area, colour) > 0);
    }

    #[test]
    fn a_thousand_characters_of_long_words_are_cut_with_an_ellipsis_inside_the_headline_area() {
        let prompt = long_words_prompt();
        for aspect in AspectRatio::ALL {
            let area = headline_area(aspect);
            let headline = Headline::lay_out(&prompt, area);
            let s = headline.scale;
            assert!(headline.lines.len() * LINE * s - (LINE - GLYPH) * s <= area.h, "{aspect}");
            assert!(headline.lines.iter().all(|line| line.len() * GLYPH * s <= area.w), "{aspect}");
            let drawn: String = headline.lines.iter().flatten().filter(|c| !c.is_whitespace()).collect();
            let whole: String = prompt.chars().filter(|c| !c.is_whitespace()).collect();
            let last: String = headline.lines.last().expect("lines").iter().collect();
            let cut = last.ends_with(ELLIPSIS) && drawn.len() < whole.len() + ELLIPSIS.len();
            assert!(drawn == whole || cut, "{aspect}: {last}");
            if aspect == AspectRatio::Square {
                assert!(cut, "1000 characters do not fit a square at the smallest scale");
            }

            let decoded = Decoded::of(&render_static_ad(&prompt, StaticAdStyle::Lifestyle, aspect));
            let colour = Palette::of(StaticAdStyle::Lifestyle).text;
            let outside_left = Rect { x: 0, y: 0, w: area.x, h: decoded.height };
            let above = Rect { x: 0, y: 0, w: decoded.width, h: area.y };
            assert_eq!(decoded.count(outside_left, colour), 0, "{aspect}");
            assert_eq!(decoded.count(above, colour), 0, "{aspect}");
            assert!(decoded.count(area, colour) > 0, "{aspect}");
        }
    }

    #[test]
    fn a_word_longer_than_a_line_is_broken_and_nothing_is_lost_when_it_fits() {
        let words: Vec<Vec<char>> = ["abcdefghij", "kl", "m"].iter().map(|w| w.chars().collect()).collect();
        let lines: Vec<String> = wrap(&words, 4).iter().map(|l| l.iter().collect()).collect();
        assert_eq!(lines, ["abcd", "efgh", "ij", "kl m"]);
    }

    #[test]
    fn a_headline_too_long_for_a_tiny_area_keeps_what_fits_and_ends_with_an_ellipsis() {
        let area = Rect { x: 0, y: 0, w: 10 * GLYPH * MIN_SCALE, h: 2 * LINE * MIN_SCALE };
        let headline = Headline::lay_out("one two three four five six seven", area);
        let lines: Vec<String> = headline.lines.iter().map(|l| l.iter().collect()).collect();
        assert_eq!(headline.scale, MIN_SCALE);
        assert_eq!(lines, ["one two", "three f..."]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        #[test]
        fn any_prompt_renders_at_every_ratio(prompt in "(?s).{0,1000}", style in 0..6usize) {
            for aspect in AspectRatio::ALL {
                let image = render_static_ad(&prompt, STYLES[style], aspect);
                prop_assert_eq!((image.width, image.height), aspect.dimensions());
                prop_assert!(image.png.starts_with(b"\x89PNG"));
            }
        }
    }
}
