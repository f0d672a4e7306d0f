//! Progress bars on stderr: shown on a terminal or when asked, silent otherwise.
//!
//! While the origin's rate limit holds every call back, the bar says so
//! ("waiting 18 s for the origin's rate limit") in place of its ETA, and
//! keeps redrawing: the origin source reports the wait with
//! [`origin_waits_until`].

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanDuration, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Until when the origin's rate limit holds calls back, as last reported.
static ORIGIN_WAIT: Mutex<Option<Instant>> = Mutex::new(None);

/// Records that origin calls wait until `until` (a rate limit), for the bars to show.
pub fn origin_waits_until(until: Instant) {
    let mut wait = ORIGIN_WAIT.lock().unwrap_or_else(|e| e.into_inner());
    if wait.is_none_or(|w| w < until) {
        *wait = Some(until);
    }
}

/// What a bar shows of a wait ending at `until`, seen at `now`: nothing once it is over.
fn wait_text(until: Option<Instant>, now: Instant) -> Option<String> {
    let left = until?.checked_duration_since(now)?;
    if left.is_zero() {
        return None;
    }
    let seconds = left.as_secs_f64().ceil() as u64;
    Some(format!("waiting {seconds} s for the origin's rate limit"))
}

fn current_wait() -> Option<String> {
    let until = *ORIGIN_WAIT.lock().unwrap_or_else(|e| e.into_inner());
    wait_text(until, Instant::now())
}

pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// `forced` shows the bar even when stderr is not a terminal.
    pub fn new(forced: bool, total: u64, what: &str) -> Self {
        if !forced && !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, {eta_or_wait})",
            )
            .expect("valid template")
            .with_key(
                "eta_or_wait",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = match current_wait() {
                        Some(wait) => w.write_str(&wait),
                        None => write!(w, "eta {:#}", HumanDuration(state.eta())),
                    };
                },
            )
            .progress_chars("=> "),
        );
        bar.set_prefix(what.to_string());
        // Redraw while nothing advances, so a wait counts down instead of freezing.
        bar.enable_steady_tick(Duration::from_secs(1));
        Progress { bar: Some(bar) }
    }

    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    pub fn message(&self, message: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(message);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_shown_until_it_is_over() {
        let now = Instant::now();
        let until = now + Duration::from_millis(17_200);
        assert_eq!(
            wait_text(Some(until), now).as_deref(),
            Some("waiting 18 s for the origin's rate limit")
        );
        assert_eq!(wait_text(Some(until), until), None);
        assert_eq!(wait_text(Some(now), until), None);
        assert_eq!(wait_text(None, now), None);
    }

    #[test]
    fn the_bar_reads_the_reported_wait() {
        origin_waits_until(Instant::now() + Duration::from_secs(600));
        let shown = current_wait().expect("a wait is shown");
        assert!(shown.starts_with("waiting 600 s") || shown.starts_with("waiting 599 s"));
        // An earlier end never shortens a longer wait already reported.
        origin_waits_until(Instant::now() + Duration::from_secs(1));
        assert!(
            current_wait()
                .unwrap()
                .contains("for the origin's rate limit")
        );
    }
}
