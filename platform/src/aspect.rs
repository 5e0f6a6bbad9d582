//! The aspect ratios a static ad may have. Parsed once at the edge of jobs-svc; pipeline-svc
//! renders from the parsed value.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AspectRatio {
    Square,
    Portrait9x16,
    Portrait4x5,
    Landscape16x9,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("must be one of 1:1, 9:16, 4:5, 16:9")]
pub struct UnknownAspectRatio;

impl AspectRatio {
    pub const ALL: [AspectRatio; 4] = [Self::Square, Self::Portrait9x16, Self::Portrait4x5, Self::Landscape16x9];

    /// Parses `1:1`, `9:16`, `4:5` or `16:9`; an empty string is the default, `1:1`.
    pub fn parse(s: &str) -> Result<Self, UnknownAspectRatio> {
        match s.trim() {
            "" | "1:1" => Ok(Self::Square),
            "9:16" => Ok(Self::Portrait9x16),
            "4:5" => Ok(Self::Portrait4x5),
            "16:9" => Ok(Self::Landscape16x9),
            _ => Err(UnknownAspectRatio),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Square => "1:1",
            Self::Portrait9x16 => "9:16",
            Self::Portrait4x5 => "4:5",
            Self::Landscape16x9 => "16:9",
        }
    }

    /// The ratio as (width, height) in lowest terms.
    pub fn ratio(&self) -> (u32, u32) {
        match self {
            Self::Square => (1, 1),
            Self::Portrait9x16 => (9, 16),
            Self::Portrait4x5 => (4, 5),
            Self::Landscape16x9 => (16, 9),
        }
    }

    /// The pixel size the local renderer draws: 1080 on the short side.
    pub fn dimensions(&self) -> (u32, u32) {
        match self {
            Self::Square => (1080, 1080),
            Self::Portrait9x16 => (1080, 1920),
            Self::Portrait4x5 => (1080, 1350),
            Self::Landscape16x9 => (1920, 1080),
        }
    }
}

impl fmt::Display for AspectRatio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ratio_parses_back_from_its_name_and_matches_its_dimensions() {
        for ar in AspectRatio::ALL {
            assert_eq!(AspectRatio::parse(ar.as_str()), Ok(ar));
            let (w, h) = ar.dimensions();
            let (rw, rh) = ar.ratio();
            assert_eq!(w * rh, h * rw, "{ar}");
        }
    }

    #[test]
    fn empty_is_square_and_anything_else_is_refused() {
        assert_eq!(AspectRatio::parse(""), Ok(AspectRatio::Square));
        for bad in ["2:1", "1:1:1", "16x9", "square", "9 :16"] {
            assert_eq!(AspectRatio::parse(bad), Err(UnknownAspectRatio), "{bad}");
        }
    }
}
