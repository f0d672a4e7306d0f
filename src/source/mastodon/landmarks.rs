//! Where earlier pages were, for servers whose ids carry no time.
//!
//! Such a range cannot become an id bound, so it is paged down from the
//! newest status. Every page read leaves a landmark (its oldest status's
//! `created_at` and id); a later range starts at the landmark created just
//! after its end (plus the lag a delivery may take) instead of the newest
//! status. The set is bounded: when full, every other landmark is dropped,
//! which keeps them spread over the time read.

use std::collections::BTreeMap;

/// The most landmarks kept.
const CAP: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct Landmarks {
    /// `created_at` (ms) → id.
    by_time: BTreeMap<i64, String>,
}

impl Landmarks {
    pub(super) fn note(&mut self, created_ms: i64, id: &str) {
        self.by_time.insert(created_ms, id.to_string());
        if self.by_time.len() > CAP {
            let mut keep = false;
            self.by_time.retain(|_, _| {
                keep = !keep;
                keep
            });
        }
    }

    /// The id of the status created first at or after `ms`, if one was seen.
    pub(super) fn at_or_after(&self, ms: i64) -> Option<String> {
        self.by_time.range(ms..).next().map(|(_, id)| id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_landmark_after_and_a_bounded_set() {
        let mut marks = Landmarks::default();
        assert_eq!(marks.at_or_after(0), None);
        marks.note(100, "a");
        marks.note(300, "b");
        assert_eq!(marks.at_or_after(150).as_deref(), Some("b"));
        assert_eq!(marks.at_or_after(100).as_deref(), Some("a"));
        assert_eq!(marks.at_or_after(301), None);
        for ms in 0..(CAP as i64 * 3) {
            marks.note(ms * 10, "x");
        }
        assert!(marks.by_time.len() <= CAP);
        assert!(marks.at_or_after(0).is_some() && marks.at_or_after(CAP as i64 * 29).is_some());
    }
}
