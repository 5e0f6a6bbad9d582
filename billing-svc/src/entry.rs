//! Ledger entry types, as stored and on the wire.

use cutx_proto::pb::LedgerEntryType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    Deduction,
    Refund,
    Purchase,
    Subscription,
    Bonus,
    FreeTier,
}

impl EntryType {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Deduction => "deduction",
            Self::Refund => "refund",
            Self::Purchase => "purchase",
            Self::Subscription => "subscription",
            Self::Bonus => "bonus",
            Self::FreeTier => "free_tier",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Deduction, Self::Refund, Self::Purchase, Self::Subscription, Self::Bonus, Self::FreeTier]
            .into_iter()
            .find(|t| t.as_str() == s)
    }

    pub fn to_pb(self) -> LedgerEntryType {
        match self {
            Self::Deduction => LedgerEntryType::Deduction,
            Self::Refund => LedgerEntryType::Refund,
            Self::Purchase => LedgerEntryType::Purchase,
            Self::Subscription => LedgerEntryType::Subscription,
            Self::Bonus => LedgerEntryType::Bonus,
            Self::FreeTier => LedgerEntryType::FreeTier,
        }
    }

    /// The types a grant may have; deductions and refunds only come from Debit and Refund.
    pub fn grant_from_pb(t: LedgerEntryType) -> Option<Self> {
        match t {
            LedgerEntryType::Purchase => Some(Self::Purchase),
            LedgerEntryType::Subscription => Some(Self::Subscription),
            LedgerEntryType::Bonus => Some(Self::Bonus),
            LedgerEntryType::FreeTier => Some(Self::FreeTier),
            LedgerEntryType::Unspecified | LedgerEntryType::Deduction | LedgerEntryType::Refund => None,
        }
    }
}
