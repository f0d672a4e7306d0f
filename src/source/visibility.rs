//! The visibility policy: which notes may be written to the archive at all.
//!
//! A signed-in caller sees more than the public: Misskey's `notes/search`
//! also returns the token owner's own `followers` and `specified` notes and
//! the `followers` notes of every account the owner follows
//! (misskey-api.md §2.7). A collector of public data must not archive those
//! silently, so every note's `visibility` is checked against the dataset's
//! policy, in every mode and for every source kind. The default allows
//! `public` and `home`; `followers` and `specified` are written only when a
//! dataset lists them. A note whose visibility is missing or unknown is left
//! out too: guessing could only ever widen what is archived.
//!
//! Mastodon names the same four levels differently; its statuses are mapped
//! with [`Visibility::from_mastodon`] (see [`super::record`]).

use std::fmt;

use serde::Deserialize;

/// A note's audience, as Misskey names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Public,
    /// Public, but kept off the public timelines ("unlisted" on Mastodon).
    Home,
    Followers,
    /// Direct: only the author and the users it names.
    Specified,
}

impl Visibility {
    pub const ALL: [Visibility; 4] = [
        Visibility::Public,
        Visibility::Home,
        Visibility::Followers,
        Visibility::Specified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Home => "home",
            Visibility::Followers => "followers",
            Visibility::Specified => "specified",
        }
    }

    /// A Misskey note's `visibility` field; None for anything else.
    pub fn from_misskey(s: &str) -> Option<Visibility> {
        Visibility::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// A Mastodon status's `visibility`: public → public, unlisted → home,
    /// private → followers, direct → specified.
    pub fn from_mastodon(s: &str) -> Option<Visibility> {
        Some(match s {
            "public" => Visibility::Public,
            "unlisted" => Visibility::Home,
            "private" => Visibility::Followers,
            "direct" => Visibility::Specified,
            _ => return None,
        })
    }

    /// "public, home, followers, specified", for messages.
    pub fn accepted() -> String {
        Visibility::ALL.map(Visibility::as_str).join(", ")
    }
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The visibilities a note may have to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisibilityPolicy {
    allowed: [bool; 4],
}

impl Default for VisibilityPolicy {
    /// `public` and `home`: what an anonymous caller may read.
    fn default() -> Self {
        VisibilityPolicy::of(&[Visibility::Public, Visibility::Home])
    }
}

impl VisibilityPolicy {
    pub fn of(allowed: &[Visibility]) -> Self {
        let mut policy = VisibilityPolicy {
            allowed: [false; 4],
        };
        for v in allowed {
            policy.allowed[*v as usize] = true;
        }
        policy
    }

    /// Every visibility: for tests and tools that must not filter.
    pub fn everything() -> Self {
        VisibilityPolicy::of(&Visibility::ALL)
    }

    pub fn allows(&self, v: Visibility) -> bool {
        self.allowed[v as usize]
    }

    /// The allowed visibilities' names, in Misskey's order (`public`, `home`, …).
    pub fn names(&self) -> Vec<&'static str> {
        Visibility::ALL
            .into_iter()
            .filter(|v| self.allows(*v))
            .map(Visibility::as_str)
            .collect()
    }

    /// Whether a note with this raw `visibility` field may be written.
    pub fn admits(&self, raw: Option<&str>) -> bool {
        raw.and_then(Visibility::from_misskey)
            .is_some_and(|v| self.allows(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_what_anyone_may_read() {
        let policy = VisibilityPolicy::default();
        assert!(policy.admits(Some("public")) && policy.admits(Some("home")));
        assert!(!policy.admits(Some("followers")) && !policy.admits(Some("specified")));
        // Missing or unknown is never guessed.
        assert!(!policy.admits(None) && !policy.admits(Some("Public")));
        assert!(!VisibilityPolicy::everything().admits(Some("unlisted")));
        let all = VisibilityPolicy::of(&Visibility::ALL);
        assert!(all.admits(Some("specified")));
    }

    #[test]
    fn mastodon_maps_onto_the_same_four_levels() {
        let mapped: Vec<_> = ["public", "unlisted", "private", "direct", "limited"]
            .map(Visibility::from_mastodon)
            .to_vec();
        assert_eq!(
            mapped,
            [
                Some(Visibility::Public),
                Some(Visibility::Home),
                Some(Visibility::Followers),
                Some(Visibility::Specified),
                None
            ]
        );
    }
}
