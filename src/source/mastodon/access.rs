//! Mastodon 4.5's feed settings (misskey-api.md §9.2): an admin can make the
//! live feeds `public`, `authenticated` or `disabled`, separately for local
//! and remote statuses, and `GET /api/v2/instance` says which
//! (`configuration.timelines_access.live_feeds.{local,remote}`).
//!
//! A disabled feed answers a signed-in caller 200 `[]`, and the public
//! timeline with one part disabled silently narrows to the other part
//! (`PublicFeed#local_only?` / `#remote_only?`): answers that look like empty
//! slots. So the probe reads the settings first and stops (exit 2, naming the
//! setting) when a part the timeline reads is closed to this caller. Only
//! accounts whose role may view feeds (`view_feeds`, or administrators) read a
//! disabled feed; their role comes from `GET /api/v1/accounts/verify_credentials`.
//! Servers without the setting (older Mastodon, other software) are read as
//! before.

use serde_json::Value;

use super::Mastodon;
use crate::source::http::{self, CallFailure};
use crate::source::{Fetch, SourceError};

/// `UserRole::FLAGS`: administrator and view_feeds.
const ADMINISTRATOR: u64 = 1 << 0;
const VIEW_FEEDS: u64 = 1 << 20;

impl Mastodon {
    /// Stops the run when the timeline reads a feed part closed to this caller.
    pub(super) async fn check_access(&self, stats: &mut Fetch) -> Result<(), SourceError> {
        let instance = self.object("api/v2/instance", stats).await?;
        let Some(access) = instance
            .as_ref()
            .and_then(|i| i.pointer("/configuration/timelines_access/live_feeds"))
        else {
            return Ok(());
        };
        let timeline = self.settings.timeline.name();
        for part in self.settings.timeline.parts() {
            let setting = access.get(part).and_then(Value::as_str).unwrap_or("public");
            let key = format!(
                "timelines_access.live_feeds.{part} = \"{setting}\" ({part}_live_feed_access)"
            );
            match setting {
                "authenticated" if self.settings.token.is_none() => {
                    return Err(SourceError::Config(format!(
                        "the Mastodon server shows its {part} live feed only to signed-in users ({key}), \
                         so the {timeline} timeline would come back empty; set a user access token in {} \
                         (the source's token_env) or pass --token",
                        self.settings.token_env
                    )));
                }
                "disabled" if !self.may_view_disabled_feeds(stats).await? => {
                    let narrows = match self.settings.timeline.parts().len() {
                        1 => format!("the {timeline} timeline answers this caller with nothing"),
                        _ => format!(
                            "the {timeline} timeline leaves out every {part} status for this caller"
                        ),
                    };
                    return Err(SourceError::Config(format!(
                        "the Mastodon server disables its {part} live feed ({key}): {narrows}; \
                         use a token of an account whose role may view feeds, or another timeline"
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether the token's account may read disabled feeds (its role's permissions).
    async fn may_view_disabled_feeds(&self, stats: &mut Fetch) -> Result<bool, SourceError> {
        if self.settings.token.is_none() {
            return Ok(false);
        }
        let account = self
            .object("api/v1/accounts/verify_credentials", stats)
            .await?;
        let permissions = account
            .as_ref()
            .and_then(|a| a.pointer("/role/permissions"))
            .and_then(|p| match p {
                Value::String(s) => s.parse::<u64>().ok(),
                other => other.as_u64(),
            })
            .unwrap_or(0);
        Ok(permissions & (ADMINISTRATOR | VIEW_FEEDS) != 0)
    }

    async fn object(&self, path: &str, stats: &mut Fetch) -> Result<Option<Value>, SourceError> {
        let policy = self.settings.policy.for_probe();
        http::call(&policy, &self.pacer, stats, || self.object_once(path))
            .await
            .map_err(CallFailure::into_probe_error)
    }
}
