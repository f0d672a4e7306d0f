//! `[datasets.X.source]`: which origin a dataset is filled from, typed as read.

use serde::Deserialize;

use crate::source::Visibility;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    #[default]
    Misskey,
    /// A Mastodon server's public timelines (`timeline`).
    Mastodon,
    Archive,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Misskey => "misskey",
            SourceKind::Mastodon => "mastodon",
            SourceKind::Archive => "archive",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    #[serde(default)]
    pub kind: SourceKind,
    pub base_url: Option<String>,
    /// Misskey: "search" | "local-timeline" | "global-timeline" | "notes"
    pub mode: Option<crate::source::misskey::Mode>,
    /// Mastodon: "local" | "public" | "remote"
    pub timeline: Option<crate::source::mastodon::Timeline>,
    /// Mastodon: only statuses with media attachments (`only_media`).
    pub only_media: Option<bool>,
    pub token_env: Option<String>,
    /// How the origin's ids encode time: detected ("auto") or fixed.
    pub id_scheme: Option<IdSchemeSetting>,
    /// Mastodon, federated timelines: how a slot claims a status,
    /// "created_at" (the default) or "receipt" (the time its id carries).
    pub slot_by: Option<crate::source::mastodon::SlotBy>,
    /// Mastodon, `slot_by = "created_at"` on a federated timeline: how late a
    /// status may be delivered and still be found in its slot (a duration).
    pub federation_lag: Option<String>,
    /// Only notes of this host ("." = local): sent where the endpoint has a
    /// parameter for it, and applied to the notes in every mode.
    pub host: Option<String>,
    pub filter: Option<TextFilter>,
    /// The visibilities a note may have to be written (default: public, home).
    /// Unknown names are refused when the file is read.
    pub visibility: Option<Vec<Visibility>>,
    /// For `kind = "archive"`: where the JSON Lines files are.
    pub location: Option<String>,
    /// Seconds a 429 without `Retry-After` or `resetMs` waits at most (default 60).
    pub rate_limit_wait_cap: Option<f64>,
}

/// `[datasets.X.source] id_scheme`: detected from the origin's notes, or
/// fixed. Misskey instances use the Misskey schemes; Mastodon-API servers any
/// [`IdCodec`](crate::source::codec::IdCodec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum IdSchemeSetting {
    Auto,
    Fixed(crate::source::codec::IdCodec),
}

impl TryFrom<String> for IdSchemeSetting {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        match name.as_str() {
            "auto" => Ok(IdSchemeSetting::Auto),
            other => other.parse().map(IdSchemeSetting::Fixed),
        }
    }
}

/// `[datasets.X.source] filter`: which notes to keep by their text.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum TextFilter {
    #[default]
    None,
    /// Notes whose text has kana or kanji.
    Japanese,
}

/// The source settings that need no command line to be judged.
pub(super) fn check_source(source: &SourceConfig) -> Result<(), String> {
    if source.visibility.as_ref().is_some_and(Vec::is_empty) {
        return Err(format!(
            "source visibility lists nothing, so no note could be written; list some of {}",
            Visibility::accepted()
        ));
    }
    Ok(())
}
