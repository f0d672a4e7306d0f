//! What each Misskey mode returns by design (misskey-api.md §2.3–2.7), so that
//! calibration compares the archive with the origin only on notes the mode
//! can return, and the advice given when the origin returns none of them.

use std::borrow::Cow;

use serde::Deserialize;

use super::{MisskeySettings, Mode};
use crate::source::BlindTo;

/// The fields of an archived note the modes' rules read.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    visibility: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    user: Option<User<'a>>,
    #[serde(rename = "channelId", default, borrow)]
    channel_id: Option<Cow<'a, str>>,
    #[serde(rename = "localOnly", default)]
    local_only: Option<bool>,
}

#[derive(Deserialize)]
struct User<'a> {
    #[serde(default, borrow)]
    host: Option<Cow<'a, str>>,
}

/// Whether `mode` can return this archived note by design:
/// - `search`: notes with text (pure renotes, file- and CW-only notes never
///   match), public or home;
/// - `local-timeline`: public notes of local users, outside channels;
/// - `global-timeline`: public notes outside channels;
/// - `notes`: public notes that are not local-only.
pub fn returnable(mode: Mode, record: &str) -> bool {
    let Ok(note) = serde_json::from_str::<Head>(record) else {
        return false;
    };
    let visibility = note.visibility.as_deref();
    let public = visibility == Some("public");
    let in_channel = note.channel_id.is_some();
    match mode {
        Mode::Search => note.text.is_some() && matches!(visibility, Some("public" | "home")),
        Mode::LocalTimeline => {
            let local = note.user.as_ref().is_some_and(|u| u.host.is_none());
            public && local && !in_channel
        }
        Mode::GlobalTimeline => public && !in_channel,
        Mode::Notes => public && note.local_only != Some(true),
    }
}

/// The likely cause when calibration finds the origin blind, and what to try.
pub fn advice(settings: &MisskeySettings, to: BlindTo, answers_recent: Option<bool>) -> String {
    let endpoint = settings.mode.endpoint();
    let env = &settings.token_env;
    let signed_in = settings.token.is_some();
    match (to, settings.mode, answers_recent) {
        (BlindTo::All, Mode::LocalTimeline, Some(true)) => format!(
            "it answers recent notes but none this old: the instance serves {endpoint} from its fanout \
             cache without database fallback (enableFanoutTimelineDbFallback off); \
             use mode = \"search\" or \"notes\""
        ),
        (BlindTo::All, Mode::LocalTimeline, Some(false)) => format!(
            "it answers no notes at all, not even recent ones: its fanout cache may be empty with \
             the database fallback off (enableFanoutTimelineDbFallback), or {} may see nothing \
             (ugcVisibilityForVisitor); use mode = \"search\" or \"notes\"",
            if signed_in {
                "this token's user"
            } else {
                "anonymous callers"
            }
        ),
        (BlindTo::All, _, Some(true)) => format!(
            "it answers recent notes but none this old: {endpoint} serves only a recent window here; \
             use mode = \"search\" or \"notes\""
        ),
        (BlindTo::All, _, _) if !signed_in => format!(
            "an anonymous caller may see no notes on this instance (ugcVisibilityForVisitor = none); \
             set a token in {env} (the source's token_env) or pass --token"
        ),
        (BlindTo::All, _, _) => format!(
            "{endpoint} hides these notes from this token's user; try another mode (\"search\", \
             \"notes\", \"global-timeline\")"
        ),
        (BlindTo::Remote, _, _) if !signed_in => format!(
            "visitors may see only local notes on this instance (ugcVisibilityForVisitor = local); \
             set a token in {env} (the source's token_env) or pass --token, or set host = \".\" \
             to archive local notes only"
        ),
        (BlindTo::Remote, Mode::Search, _) => "the search index may hold only local notes \
             (Meilisearch's default scope); use mode = \"notes\" or \"global-timeline\", or set \
             host = \".\" to archive local notes only"
            .to_string(),
        (to, _, _) => crate::source::provenance::generic_advice(to, answers_recent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_returns_what_its_endpoint_holds() {
        let local = r#"{"text":"a","visibility":"public","user":{"host":null}}"#;
        let remote = r#"{"text":"a","visibility":"public","user":{"host":"m.example"}}"#;
        let renote = r#"{"text":null,"visibility":"public","user":{"host":null}}"#;
        let home = r#"{"text":"a","visibility":"home","user":{"host":null}}"#;
        let channel = r#"{"text":"a","visibility":"public","user":{"host":null},"channelId":"c1"}"#;
        let local_only =
            r#"{"text":"a","visibility":"public","user":{"host":null},"localOnly":true}"#;
        let table = [
            (Mode::Search, [true, true, false, true, true, true]),
            (Mode::LocalTimeline, [true, false, true, false, false, true]),
            (Mode::GlobalTimeline, [true, true, true, false, false, true]),
            (Mode::Notes, [true, true, true, false, true, false]),
        ];
        for (mode, want) in table {
            let got =
                [local, remote, renote, home, channel, local_only].map(|n| returnable(mode, n));
            assert_eq!(got, want, "{mode:?}");
        }
        assert!(!returnable(Mode::Notes, "not json"));
    }
}
