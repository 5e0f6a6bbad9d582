//! A job's states and the moves between them: the reference product's state machine.
//!
//! `pending -> queued | processing | failed | canceled`; `queued -> processing | failed |
//! canceled`; `processing -> completed | failed | canceled | expired`; `failed | expired ->
//! pending` (a retry). Nothing else. Completed and canceled are final.

use cutx_proto::pb;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    pub const ALL: [Status; 7] =
        [Self::Pending, Self::Queued, Self::Processing, Self::Completed, Self::Failed, Self::Canceled, Self::Expired];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

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
        Self::ALL.into_iter().find(|st| st.to_pb() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::Status::{self, *};
    use proptest::prelude::*;

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
        for from in Status::ALL {
            for to in Status::ALL {
                assert_eq!(from.can_move_to(to), allowed.contains(&(from, to)), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(Status::from_pb(s.to_pb()), Some(s));
        }
    }

    proptest! {
        /// Whatever moves are attempted, completed and canceled are never left, and a job only
        /// reaches completed by way of processing.
        #[test]
        fn completed_and_canceled_are_never_left(moves in proptest::collection::vec(0..7usize, 0..40)) {
            let mut state = Pending;
            let mut seen_processing = false;
            for m in moves {
                let to = Status::ALL[m];
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
