//! Ledger entry types, as stored and on the wire.

use cutx_proto::pb::LedgerEntryType;
use sea_orm::{DeriveActiveEnum, EnumIter};

/// A ledger entry's type. Stored in `credit_ledger.entry_type` as its snake_case name
/// (`free_tier`), the word REST uses. An unknown stored word is an error, never a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text", rename_all = "snake_case")]
pub enum EntryType {
    Deduction,
    Refund,
    Purchase,
    Subscription,
    Bonus,
    FreeTier,
    /// Credits taken back for a payment Stripe refunded (negative).
    Adjustment,
}

impl EntryType {
    pub fn to_pb(self) -> LedgerEntryType {
        match self {
            Self::Deduction => LedgerEntryType::Deduction,
            Self::Refund => LedgerEntryType::Refund,
            Self::Purchase => LedgerEntryType::Purchase,
            Self::Subscription => LedgerEntryType::Subscription,
            Self::Bonus => LedgerEntryType::Bonus,
            Self::FreeTier => LedgerEntryType::FreeTier,
            Self::Adjustment => LedgerEntryType::Adjustment,
        }
    }

    /// Whether an entry of this type takes credits from the balance.
    pub fn takes(self) -> bool {
        matches!(self, Self::Deduction | Self::Adjustment)
    }

    /// The types a grant may have; deductions and refunds only come from Debit and Refund,
    /// adjustments from a refunded Stripe charge.
    pub fn grant_from_pb(t: LedgerEntryType) -> Option<Self> {
        match t {
            LedgerEntryType::Purchase => Some(Self::Purchase),
            LedgerEntryType::Subscription => Some(Self::Subscription),
            LedgerEntryType::Bonus => Some(Self::Bonus),
            LedgerEntryType::FreeTier => Some(Self::FreeTier),
            LedgerEntryType::Unspecified
            | LedgerEntryType::Deduction
            | LedgerEntryType::Refund
            | LedgerEntryType::Adjustment => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ActiveEnum, Iterable};

    /// The words already stored in `credit_ledger.entry_type`: a change would need a migration.
    #[test]
    fn each_entry_type_is_stored_as_the_word_the_database_already_holds() {
        let words: Vec<String> = EntryType::iter().map(|t| t.to_value()).collect();
        assert_eq!(words, ["deduction", "refund", "purchase", "subscription", "bonus", "free_tier", "adjustment"]);
        for t in EntryType::iter() {
            assert_eq!(EntryType::try_from_value(&t.to_value()).unwrap(), t);
            assert_ne!(t.to_pb(), LedgerEntryType::Unspecified);
        }
        assert!(EntryType::try_from_value(&"gift".to_string()).is_err());
    }

    #[test]
    fn only_purchases_subscriptions_bonuses_and_the_free_tier_can_be_granted() {
        let grantable: Vec<EntryType> = EntryType::iter().filter_map(|t| EntryType::grant_from_pb(t.to_pb())).collect();
        assert_eq!(grantable, [EntryType::Purchase, EntryType::Subscription, EntryType::Bonus, EntryType::FreeTier]);
        assert_eq!(EntryType::grant_from_pb(LedgerEntryType::Unspecified), None);
    }
}
