//! The Misskey endpoints a fill can read, as the config and the command line spell them.

use std::str::FromStr;

/// Which endpoint a fill reads; spelled in the config and on the command line
/// as `search`, `local-timeline`, `global-timeline` or `notes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum Mode {
    Search,
    LocalTimeline,
    GlobalTimeline,
    Notes,
}

impl Mode {
    pub fn endpoint(self) -> &'static str {
        match self {
            Mode::Search => "notes/search",
            Mode::LocalTimeline => "notes/local-timeline",
            Mode::GlobalTimeline => "notes/global-timeline",
            Mode::Notes => "notes",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Search => "search",
            Mode::LocalTimeline => "local-timeline",
            Mode::GlobalTimeline => "global-timeline",
            Mode::Notes => "notes",
        }
    }
}

impl TryFrom<String> for Mode {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        name.parse()
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Mode::Search,
            Mode::LocalTimeline,
            Mode::GlobalTimeline,
            Mode::Notes,
        ]
        .into_iter()
        .find(|m| {
            m.name() == s || m.endpoint() == s || (s == "timeline" && *m == Mode::LocalTimeline)
        })
        .ok_or_else(|| {
            format!("unknown mode {s:?} (search, local-timeline, global-timeline, notes)")
        })
    }
}
