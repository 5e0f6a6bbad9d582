//! A job's states and the moves between them: the reference product's state machine.
//!
//! `pending -> queued | processing | failed | canceled`; `queued -> processing | failed |
//! canceled`; `processing -> completed | failed | canceled | expired`; `failed | expired ->
//! pending` (a retry). Nothing else. Completed and canceled are final.

use cutx_proto::pb;
use sea_orm::{DeriveActiveEnum, EnumIter, Iterable};

/// A job's status. Stored in `jobs.status` (and `job_transitions`) as its lowercase name, the
/// word REST uses. An unknown stored word is an error, never a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text", rename_all = "snake_case")]
pub enum Status {
    Pending,
    Queued,
    Processing,
    Completed,
    Failed,
    Canceled,
    Expired,
}

impl Status {
    /// Whether the job has ended (a retry may still restart failed and expired jobs).
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Canceled | Self::Expired)
    }

    /// Whether `self -> to` is an allowed move.
    pub fn can_move_to(&self, to: Status) -> bool {
        use Status::*;
        matches!(
            (self, to),
            (Pending, Queued | Processing | Failed | Canceled)
                | (Queued, Processing | Failed | Canceled)
                | (Processing, Completed | Failed | Canceled | Expired)
                | (Failed | Expired, Pending)
        )
    }

    pub fn to_pb(self) -> pb::JobStatus {
        match self {
            Self::Pending => pb::JobStatus::Pending,
            Self::Queued => pb::JobStatus::Queued,
            Self::Processing => pb::JobStatus::Processing,
            Self::Completed => pb::JobStatus::Completed,
            Self::Failed => pb::JobStatus::Failed,
            Self::Canceled => pb::JobStatus::Canceled,
            Self::Expired => pb::JobStatus::Expired,
        }
    }

    pub fn from_pb(s: pb::JobStatus) -> Option<Self> {
        Self::iter().find(|st| st.to_pb() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::Status::{self, *};
    use cutx_proto::pb;
    use proptest::prelude::*;
    use sea_orm::{ActiveEnum, Iterable};

    #[test]
    fn exactly_the_reference_moves_are_allowed() {
        let allowed = [
            (Pending, Queued),
            (Pending, Processing),
            (Pending, Failed),
            (Pending, Canceled),
            (Queued, Processing),
            (Queued, Failed),
            (Queued, Canceled),
            (Processing, Completed),
            (Processing, Failed),
            (Processing, Canceled),
            (Processing, Expired),
            (Failed, Pending),
            (Expired, Pending),
        ];
        for from in Status::iter() {
            for to in Status::iter() {
                assert_eq!(from.can_move_to(to), allowed.contains(&(from, to)), "{from:?} -> {to:?}");
            }
        }
    }

    /// The words already stored in `jobs.status`: a change here would need a migration.
    #[test]
    fn each_status_is_stored_as_the_word_the_database_already_holds() {
        let words: Vec<String> = Status::iter().map(|s| s.to_value()).collect();
        assert_eq!(words, ["pending", "queued", "processing", "completed", "failed", "canceled", "expired"]);
        for s in Status::iter() {
            assert_eq!(Status::try_from_value(&s.to_value()).unwrap(), s);
            assert_eq!(Status::from_pb(s.to_pb()), Some(s));
        }
        assert!(Status::try_from_value(&"zombie".to_string()).is_err());
        assert_eq!(Status::from_pb(pb::JobStatus::Unspecified), None);
    }

    proptest! {
        /// Whatever moves are attempted, completed and canceled are never left, and a job only
        /// reaches completed by way of processing.
        #[test]
        fn completed_and_canceled_are_never_left(moves in proptest::collection::vec(0..7usize, 0..40)) {
            let mut state = Pending;
            let mut seen_processing = false;
            for m in moves {
                let to = Status::iter().nth(m).unwrap();
                if state.can_move_to(to) {
                    prop_assert!(!matches!(state, Completed | Canceled));
                    if to == Completed { prop_assert!(seen_processing); }
                    if to == Processing { seen_processing = true; }
                    if to == Pending { seen_processing = false; }
                    state = to;
                }
            }
        }
    }
}
