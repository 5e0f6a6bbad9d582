//! Job kinds, how they run, and what they cost (configuration with the reference's defaults).

use cutx_proto::pb;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Copy,
    Scrape,
    StaticAd,
    Tts,
    I2v,
    Reframe,
    UgcVideo,
}

impl Kind {
    pub const ALL: [Kind; 7] =
        [Self::Copy, Self::Scrape, Self::StaticAd, Self::Tts, Self::I2v, Self::Reframe, Self::UgcVideo];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Copy => "copy",
            Self::Scrape => "scrape",
            Self::StaticAd => "static_ad",
            Self::Tts => "tts",
            Self::I2v => "i2v",
            Self::Reframe => "reframe",
            Self::UgcVideo => "ugc_video",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Synchronous kinds run at once and the create call answers with the result.
    pub fn is_sync(&self) -> bool {
        matches!(self, Self::Copy | Self::Scrape)
    }

    /// The queue topic of an asynchronous kind.
    pub fn topic(&self) -> String {
        format!("cutx.jobs.{}", self.as_str())
    }

    pub fn to_pb(self) -> pb::JobKind {
        match self {
            Self::Copy => pb::JobKind::Copy,
            Self::Scrape => pb::JobKind::Scrape,
            Self::StaticAd => pb::JobKind::StaticAd,
            Self::Tts => pb::JobKind::Tts,
            Self::I2v => pb::JobKind::I2v,
            Self::Reframe => pb::JobKind::Reframe,
            Self::UgcVideo => pb::JobKind::UgcVideo,
        }
    }

    pub fn from_pb(k: pb::JobKind) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.to_pb() == k)
    }
}

/// Credits per kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prices {
    pub copy: i64,
    pub scrape: i64,
    pub static_ad: i64,
    pub tts: i64,
    pub i2v: i64,
    pub reframe: i64,
    pub ugc_video: i64,
}

impl Default for Prices {
    fn default() -> Self {
        Self { copy: 1, scrape: 0, static_ad: 3, tts: 2, i2v: 10, reframe: 20, ugc_video: 40 }
    }
}

impl Prices {
    pub fn of(&self, kind: Kind) -> i64 {
        match kind {
            Kind::Copy => self.copy,
            Kind::Scrape => self.scrape,
            Kind::StaticAd => self.static_ad,
            Kind::Tts => self.tts,
            Kind::I2v => self.i2v,
            Kind::Reframe => self.reframe,
            Kind::UgcVideo => self.ugc_video,
        }
    }
}
