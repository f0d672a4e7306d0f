//! Completion notifications to a Discord- or Slack-style webhook.
//!
//! The payload carries the text twice, as `content` (Discord) and `text`
//! (Slack), so one URL of either kind works. A failing webhook is logged as a
//! warning and never fails the run; its URL (which embeds a token) is never
//! logged.

use std::time::Duration;

use serde::Serialize;

use crate::catalog::RunSummary;
use crate::config::Dataset;
use crate::slot::Window;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub dataset: String,
    pub command: String,
    pub window_start: String,
    pub window_end: String,
    pub slots: Option<u64>,
    pub missing_before: Option<u64>,
    pub filled: Option<u64>,
    pub still_missing: Option<u64>,
    pub status: String,
}

impl Summary {
    pub fn new(ds: &Dataset, window: Window, command: &str, run: &RunSummary) -> Summary {
        Summary {
            dataset: ds.name.clone(),
            command: command.to_string(),
            window_start: ds.spec.local_iso(window.first),
            window_end: ds.spec.local_iso(window.last),
            slots: run.slots,
            missing_before: run.missing_before,
            filled: run.filled,
            still_missing: run.still_missing,
            status: run.outcome.to_string(),
        }
    }

    pub fn text(&self) -> String {
        let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_string());
        format!(
            "slotfill {} {} [{} .. {}]: {} — slots {}, missing before {}, filled {}, still missing {}",
            self.command,
            self.dataset,
            self.window_start,
            self.window_end,
            self.status,
            n(self.slots),
            n(self.missing_before),
            n(self.filled),
            n(self.still_missing)
        )
    }
}

#[derive(Serialize)]
struct Payload<'a, T: Serialize> {
    content: &'a str,
    text: &'a str,
    slotfill: &'a T,
}

/// Posts the summary; failures are warnings.
pub async fn send(url: &str, summary: &Summary) {
    send_message(url, &summary.text(), summary).await;
}

/// Posts a message (`content` and `text`) with its details under `slotfill`;
/// failures are warnings. Returns whether the webhook accepted it.
pub async fn send_message<T: Serialize>(url: &str, text: &str, details: &T) -> bool {
    let payload = Payload {
        content: text,
        text,
        slotfill: details,
    };
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
    {
        Ok(client) => client,
        Err(_) => return false,
    };
    match client.post(url).json(&payload).send().await {
        Ok(response) if response.status().is_success() => {
            tracing::info!("notification sent");
            true
        }
        Ok(response) => {
            tracing::warn!(
                status = response.status().as_u16(),
                "the notification webhook refused the message"
            );
            false
        }
        Err(e) => {
            tracing::warn!(
                timeout = e.is_timeout(),
                connect = e.is_connect(),
                "could not reach the notification webhook"
            );
            false
        }
    }
}
