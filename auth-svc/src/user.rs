//! A user's role and status, as stored and on the wire.

use cutx_proto::pb;
use sea_orm::{DeriveActiveEnum, EnumIter};

/// What a user may do. Stored in `users.role` as its lowercase name, the word REST uses. An
/// unknown stored word is an error, never a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text", rename_all = "snake_case")]
pub enum Role {
    User,
    Admin,
    Owner,
}

impl Role {
    pub fn to_pb(self) -> pb::UserRole {
        match self {
            Self::User => pb::UserRole::User,
            Self::Admin => pb::UserRole::Admin,
            Self::Owner => pb::UserRole::Owner,
        }
    }
}

/// Whether a user may sign in. Stored in `users.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text", rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    Suspended,
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ActiveEnum, Iterable};

    /// The words stored in `users`: a change would need a migration.
    #[test]
    fn roles_and_statuses_are_stored_as_the_words_the_database_holds() {
        assert_eq!(Role::iter().map(|r| r.to_value()).collect::<Vec<_>>(), ["user", "admin", "owner"]);
        assert_eq!(UserStatus::iter().map(|s| s.to_value()).collect::<Vec<_>>(), ["active", "suspended"]);
        assert!(Role::try_from_value(&"root".to_string()).is_err());
        assert!(Role::iter().all(|r| r.to_pb() != pb::UserRole::Unspecified));
    }
}
