//! The validity rules: what an object's facts say about it.

use std::collections::HashMap;

use crate::config::{Role, Rules};
use crate::state::State;
use crate::store::LineCount;

/// The user metadata slotfill writes on complement objects: written by fill
/// ([`ComplementMeta::to_metadata`]), read back by scan ([`ComplementMeta::from_metadata`]);
/// `promote` copies it with the object into a collector location.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComplementMeta {
    pub complete: Option<bool>,
    pub note_count: Option<i64>,
    pub earliest: Option<String>,
    pub latest: Option<String>,
    /// A collector location's object that `promote` copied from the complement
    /// (it carries `promoted-from`): judged by this metadata like the original.
    pub promoted: bool,
}

/// Seconds from a slot's start to its earliest note: how much of the slot's
/// beginning the object covers (0 is full coverage).
pub fn coverage_seconds(slot: i64, earliest: Option<&str>) -> Option<f64> {
    let ms = crate::source::sink::parse_created_at(earliest?)?;
    Some((ms - slot * 1000) as f64 / 1000.0)
}

impl ComplementMeta {
    /// The metadata of a complete fill of `slot` (rendered `slot_local`) from `source`.
    pub fn to_metadata(
        &self,
        slot: i64,
        slot_local: String,
        source: String,
    ) -> Vec<(String, String)> {
        let coverage = coverage_seconds(slot, self.earliest.as_deref());
        vec![
            ("slot".to_string(), slot_local),
            (
                "note-count".to_string(),
                self.note_count.unwrap_or(0).to_string(),
            ),
            (
                "earliest".to_string(),
                self.earliest.clone().unwrap_or_default(),
            ),
            (
                "latest".to_string(),
                self.latest.clone().unwrap_or_default(),
            ),
            (
                "complete".to_string(),
                self.complete.unwrap_or(false).to_string(),
            ),
            ("source".to_string(), source),
            (
                "coverage-seconds".to_string(),
                format!("{:.3}", coverage.unwrap_or(0.0)),
            ),
            (
                "slotfill-version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
        ]
    }

    pub fn from_metadata(metadata: &HashMap<String, String>) -> Self {
        let get = |k: &str| {
            metadata
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        ComplementMeta {
            complete: get("complete").map(|v| v == "true"),
            note_count: get("note-count").and_then(|v| v.parse().ok()),
            earliest: get("earliest").filter(|v| !v.is_empty()),
            latest: get("latest").filter(|v| !v.is_empty()),
            promoted: get("promoted-from").is_some(),
        }
    }

    /// The metadata that counts for an object of `role`: a complement object's
    /// always; a collector object's only when `promote` copied it there, so a
    /// collector that happens to write a `complete` key is still judged by the rules.
    pub fn for_role(role: Role, metadata: &HashMap<String, String>) -> Self {
        let meta = Self::from_metadata(metadata);
        if role == Role::Complement || meta.promoted {
            meta
        } else {
            Self::default()
        }
    }
}

/// Judges one object.
///
/// A complement object carrying slotfill's metadata is valid when its fill
/// was complete and its line count matches the note count it claims, however
/// few lines it has; with zero lines it records that the origin confirmed the
/// slot empty. A copy `promote` made into a collector location is judged the
/// same way (a quiet slot's object is small and still whole). Everything else
/// follows the collector rules.
pub fn judge(
    role: Role,
    size: u64,
    count: Option<&LineCount>,
    meta: &ComplementMeta,
    rules: &Rules,
) -> State {
    if (role == Role::Complement || meta.promoted)
        && let Some(complete) = meta.complete
    {
        let Some(count) = count else {
            return State::Incomplete;
        };
        if !count.utf8_valid {
            return State::Unreadable;
        }
        let count_matches = meta.note_count.is_none_or(|n| n == count.lines as i64);
        return if complete && count_matches && count.lines == 0 {
            State::Empty
        } else if complete && count_matches {
            State::Ok
        } else {
            State::Incomplete
        };
    }
    if size <= rules.min_bytes {
        return State::TooSmall;
    }
    let Some(count) = count else {
        return State::TooSmall;
    };
    if !count.utf8_valid {
        State::Unreadable
    } else if count.lines <= rules.min_lines {
        State::TooFewLines
    } else if count.lines >= rules.max_lines {
        State::TooManyLines
    } else {
        State::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complement_metadata_reads_back_what_fill_writes() {
        let meta = ComplementMeta {
            complete: Some(true),
            note_count: Some(3),
            earliest: Some("2025-07-31T15:40:01.500Z".into()),
            latest: Some("2025-07-31T15:49:00.000Z".into()),
            promoted: false,
        };
        let slot = 1_753_976_400; // 2025-07-31T15:40:00Z
        let written: HashMap<String, String> = meta
            .to_metadata(slot, "2025-08-01T00:40:00+09:00".into(), "misskey:x".into())
            .into_iter()
            .collect();
        assert_eq!(ComplementMeta::from_metadata(&written), meta);
        assert_eq!(written["coverage-seconds"], "1.500");
        assert_eq!(coverage_seconds(slot, meta.earliest.as_deref()), Some(1.5));
    }

    fn lines(n: u64) -> LineCount {
        LineCount {
            lines: n,
            bytes: n * 3600,
            capped: false,
            utf8_valid: true,
            unterminated: false,
        }
    }

    #[test]
    fn collector_rules_follow_the_brief() {
        let r = Rules::default();
        let p = Role::Primary;
        let none = ComplementMeta::default();
        assert_eq!(
            judge(p, 102_400, Some(&lines(500)), &none, &r),
            State::TooSmall
        );
        assert_eq!(
            judge(p, 102_401, Some(&lines(100)), &none, &r),
            State::TooFewLines
        );
        assert_eq!(judge(p, 102_401, Some(&lines(101)), &none, &r), State::Ok);
        assert_eq!(judge(p, 102_401, Some(&lines(9_999)), &none, &r), State::Ok);
        assert_eq!(
            judge(p, 102_401, Some(&lines(10_000)), &none, &r),
            State::TooManyLines
        );
        let bad = LineCount {
            utf8_valid: false,
            ..lines(500)
        };
        assert_eq!(judge(p, 200_000, Some(&bad), &none, &r), State::Unreadable);
    }

    #[test]
    fn complement_objects_are_judged_by_their_metadata() {
        let r = Rules::default();
        let c = Role::Complement;
        let meta = |complete, n| ComplementMeta {
            complete: Some(complete),
            note_count: Some(n),
            ..Default::default()
        };
        assert_eq!(
            judge(c, 900, Some(&lines(3)), &meta(true, 3), &r),
            State::Ok
        );
        assert_eq!(
            judge(c, 900, Some(&lines(2)), &meta(true, 3), &r),
            State::Incomplete
        );
        assert_eq!(
            judge(c, 0, Some(&lines(0)), &meta(true, 0), &r),
            State::Empty
        );
        assert_eq!(
            judge(c, 0, Some(&lines(0)), &meta(false, 0), &r),
            State::Incomplete
        );
        assert_eq!(
            judge(c, 900, Some(&lines(3)), &meta(false, 3), &r),
            State::Incomplete
        );
        // Without slotfill's metadata the collector rules apply.
        assert_eq!(
            judge(c, 900, Some(&lines(3)), &ComplementMeta::default(), &r),
            State::TooSmall
        );
    }

    #[test]
    fn a_promoted_copy_is_judged_like_its_original() {
        let r = Rules::default();
        let p = Role::Primary;
        let mut metadata = HashMap::new();
        metadata.insert("complete".to_string(), "true".to_string());
        metadata.insert("note-count".to_string(), "3".to_string());
        // A collector's own `complete` key does not make its object exempt from the rules.
        let own = ComplementMeta::for_role(p, &metadata);
        assert_eq!(judge(p, 900, Some(&lines(3)), &own, &r), State::TooSmall);
        metadata.insert("Promoted-From".to_string(), "s3://b/c/k".to_string());
        let promoted = ComplementMeta::for_role(p, &metadata);
        assert!(promoted.promoted);
        assert_eq!(judge(p, 900, Some(&lines(3)), &promoted, &r), State::Ok);
        assert_eq!(
            judge(p, 900, Some(&lines(2)), &promoted, &r),
            State::Incomplete
        );
    }
}
