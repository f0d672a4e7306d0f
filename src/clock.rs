//! The one place that reads the wall clock.
//!
//! `SLOTFILL_NOW` (RFC 3339) pins "now" so relative windows and retry times are
//! deterministic in tests and reproducible when replaying a night's job.

use chrono::{DateTime, SecondsFormat, Utc};

#[allow(clippy::disallowed_methods)]
pub fn now() -> DateTime<Utc> {
    match std::env::var("SLOTFILL_NOW") {
        Ok(pinned) => DateTime::parse_from_rfc3339(&pinned)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|_| Utc::now()),
        Err(_) => Utc::now(),
    }
}

/// Now as stored in the catalog: RFC 3339, UTC, milliseconds.
pub fn now_text() -> String {
    timestamp_text(now())
}

pub fn timestamp_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
