//! Job kinds, how they run, and what they cost (configuration with the reference's defaults).

use cutx_platform::credits::Credits;
use cutx_proto::pb;
use sea_orm::{ActiveEnum, DeriveActiveEnum, EnumIter, Iterable};

/// A job's kind. Stored in `jobs.kind` as its snake_case name (`static_ad`): the word REST
/// uses and the queue topic ends with. An unknown stored word is an error, never a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text", rename_all = "snake_case")]
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
    /// Synchronous kinds run at once and the create call answers with the result.
    pub fn is_sync(&self) -> bool {
        matches!(self, Self::Copy | Self::Scrape)
    }

    /// The queue topic of an asynchronous kind.
    pub fn topic(&self) -> String {
        format!("cutx.jobs.{}", self.to_value())
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
        Self::iter().find(|kind| kind.to_pb() == k)
    }
}

/// Credits per kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prices {
    pub copy: Credits,
    pub scrape: Credits,
    pub static_ad: Credits,
    pub tts: Credits,
    pub i2v: Credits,
    pub reframe: Credits,
    pub ugc_video: Credits,
}

impl Default for Prices {
    fn default() -> Self {
        let c = Credits::from_u32;
        Self { copy: c(1), scrape: c(0), static_ad: c(3), tts: c(2), i2v: c(10), reframe: c(20), ugc_video: c(40) }
    }
}

impl Prices {
    pub fn of(&self, kind: Kind) -> Credits {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The words already stored in `jobs.kind` and ending the queue topics: a change here would
    /// need a migration and a queue drain.
    #[test]
    fn each_kind_is_stored_as_the_word_the_database_already_holds() {
        let words: Vec<String> = Kind::iter().map(|k| k.to_value()).collect();
        assert_eq!(words, ["copy", "scrape", "static_ad", "tts", "i2v", "reframe", "ugc_video"]);
        assert_eq!(Kind::StaticAd.topic(), "cutx.jobs.static_ad");
        for k in Kind::iter() {
            assert_eq!(Kind::try_from_value(&k.to_value()).unwrap(), k);
            assert_eq!(Kind::from_pb(k.to_pb()), Some(k));
        }
        assert!(Kind::try_from_value(&"podcast".to_string()).is_err());
        assert_eq!(Kind::from_pb(pb::JobKind::Unspecified), None);
    }
}
