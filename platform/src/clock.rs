//! Time as stored: integer milliseconds since the Unix epoch.

use chrono::{DateTime, Utc};

pub fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

pub fn to_timestamp(millis: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: millis.div_euclid(1000), nanos: (millis.rem_euclid(1000) * 1_000_000) as i32 }
}

pub fn datetime_to_timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    to_timestamp(t.timestamp_millis())
}
