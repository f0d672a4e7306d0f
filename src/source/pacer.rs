//! One pacer for every origin call of a run, however many slots are fetched
//! at once: every HTTP origin's calls take a [`Permit`] from it (in
//! [`super::http::send`]) and report each answer's [`Limits`] back.
//!
//! - `--sleep` spaces calls out.
//! - **The announced budget.** When the origin says how many calls its
//!   window has left (`X-RateLimit-Remaining`), no more calls are in flight
//!   than that: each call spends one, an answer corrects the count (minus
//!   the calls still in flight, which it may not have counted yet), and when
//!   nothing is left every caller waits for the window's reset. After the
//!   reset one call goes alone and brings the new window's budget.
//! - **A throttle** (429, or 503 with `Retry-After`) holds every caller back
//!   for the wait it named, then lets one call go alone. An origin that
//!   throttles without announcing a budget is called one at a time: with no
//!   count to go by, that is what keeps it to one refusal a window (Misskey
//!   counts refused calls too, so hammering only extends the block). Calls
//!   overlap again once an answer announces a budget, or after a clean
//!   stretch ([`SERIAL_RECOVERY_CALLS`] answers and [`SERIAL_RECOVERY`] with
//!   no throttle): one stray refusal from a proxy does not make a month-long
//!   backfill serial.
//!
//! What each origin last announced is kept for `/metrics` ([`budgets`]).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::ratelimit::{Limits, MAX_WAIT};

/// Two resets closer than this belong to the same window.
const SAME_WINDOW: Duration = Duration::from_secs(1);
/// The least a throttle's named wait holds every call back (as `http::call`).
const TOLD_HOLD_MIN: Duration = Duration::from_millis(500);
/// How long a throttle that names no wait in its headers holds every call
/// back until its caller backs off.
const UNTOLD_HOLD: Duration = Duration::from_millis(50);
/// Serial calls overlap again after this many answers without a throttle…
pub const SERIAL_RECOVERY_CALLS: u32 = 100;
/// …and this long since the last throttle.
pub const SERIAL_RECOVERY: Duration = Duration::from_secs(60);

pub struct Pacer {
    interval: Duration,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug)]
struct State {
    /// No call starts before this: `--sleep` spacing and throttle waits.
    next: Instant,
    in_flight: u32,
    /// The budget the origin announced for its current window.
    window: Option<Window>,
    /// The origin's last answers announced budgets: without a current
    /// window, one call goes alone to learn it.
    announces: bool,
    /// It throttled without announcing a budget: one call at a time.
    serial: bool,
    /// While serial: answers without a throttle since the last one, and when that was.
    clean_answers: u32,
    throttled_at: Instant,
    /// The next call goes alone (after a throttle wait), until an answer comes.
    alone: bool,
}

#[derive(Debug)]
struct Window {
    /// Calls that may still start in this window.
    remaining: u64,
    resets_at: Instant,
    /// The wait for this reset was reported once.
    reported: bool,
}

/// What an origin last announced about its rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Calls left in the window, as the origin said.
    pub remaining: u64,
    /// The window's size, when announced.
    pub limit: Option<u64>,
    /// When the window resets (clock time).
    pub resets_at: DateTime<Utc>,
    pub observed_at: DateTime<Utc>,
}

static BUDGETS: Mutex<BTreeMap<String, Budget>> = Mutex::new(BTreeMap::new());

/// The last budget each origin (by base URL) announced in this process, for `/metrics`.
pub fn budgets() -> BTreeMap<String, Budget> {
    BUDGETS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// One call in flight; give its answer's [`Limits`] to [`Permit::observe`].
#[must_use = "a permit counts a call in flight until dropped"]
pub struct Permit<'a> {
    pacer: &'a Pacer,
}

enum Admission {
    Now,
    /// Wait until then, or until a call in flight answers.
    Until(Option<Instant>),
}

impl State {
    fn admit(&mut self, now: Instant) -> Admission {
        if self.next > now {
            return Admission::Until(Some(self.next));
        }
        if self.window.as_ref().is_some_and(|w| now >= w.resets_at) {
            self.window = None;
        }
        let alone = self.serial || self.alone || (self.announces && self.window.is_none());
        if alone && self.in_flight > 0 {
            return Admission::Until(None);
        }
        if let Some(window) = &mut self.window {
            if window.remaining == 0 {
                if !window.reported {
                    window.reported = true;
                    let wait = window.resets_at.saturating_duration_since(now);
                    tracing::info!(
                        wait_ms = wait.as_millis() as u64,
                        "origin rate limit spent: waiting for its reset"
                    );
                    crate::progress::origin_waits_until(window.resets_at.into_std());
                }
                return Admission::Until(Some(window.resets_at));
            }
            window.remaining -= 1;
        }
        self.in_flight += 1;
        Admission::Now
    }
}

impl Pacer {
    pub fn new(interval: Duration) -> Self {
        Pacer {
            interval,
            state: Mutex::new(State {
                next: Instant::now(),
                in_flight: 0,
                window: None,
                announces: false,
                serial: false,
                clean_answers: 0,
                throttled_at: Instant::now(),
                alone: false,
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a call may start: its turn, and the origin's budget.
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let admission = {
                let mut state = self.state();
                let now = Instant::now();
                let admission = state.admit(now);
                if let Admission::Now = admission {
                    state.next = now.max(state.next) + self.interval;
                }
                admission
            };
            match admission {
                Admission::Now => return Permit { pacer: self },
                Admission::Until(Some(at)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = changed => {}
                    }
                }
                Admission::Until(None) => changed.await,
            }
        }
    }

    /// Holds every caller back for `wait` from now (a throttle's wait); then
    /// one call goes alone.
    pub fn back_off(&self, wait: Duration) {
        let mut state = self.state();
        let until = Instant::now() + wait;
        state.next = state.next.max(until);
        state.alone = true;
    }

    /// Whether calls go one at a time for good (the origin throttled without a budget).
    pub fn is_serial(&self) -> bool {
        self.state().serial
    }
}

impl Permit<'_> {
    /// Takes in what one answer (its status and rate-limit headers) says;
    /// `origin` names it in [`budgets`].
    pub fn observe(&self, origin: &str, status: reqwest::StatusCode, limits: &Limits) {
        let mut state = self.pacer.state();
        let now = Instant::now();
        if let (Some(remaining), Some(reset_in)) = (limits.remaining, limits.reset_in) {
            state.announces = true;
            // A budget to go by: no need to guess with one call at a time.
            state.serial = false;
            // The other calls in flight may not be counted in this answer yet.
            let others = u64::from(state.in_flight.saturating_sub(1));
            let estimate = remaining.saturating_sub(others);
            let resets_at = now + reset_in;
            tracing::debug!(
                remaining,
                others,
                reset_ms = reset_in.as_millis() as u64,
                "origin rate-limit budget"
            );
            // The same window (answers of one window name resets a little
            // apart) keeps the lowest count; a reset elsewhere is another
            // throttle's window (servers have several), and the latest word wins.
            match &mut state.window {
                Some(w)
                    if resets_at <= w.resets_at + SAME_WINDOW
                        && w.resets_at <= resets_at + SAME_WINDOW =>
                {
                    w.remaining = w.remaining.min(estimate);
                }
                _ => {
                    state.window = Some(Window {
                        remaining: estimate,
                        resets_at,
                        reported: false,
                    })
                }
            }
            record(origin, remaining, limits.limit, reset_in);
        }
        if let Some(told) = limits.throttle(status, &[]) {
            if !limits.announces_budget() {
                state.serial = true;
                state.clean_answers = 0;
                state.throttled_at = now;
            }
            state.alone = true;
            // Held back at once, before the caller has read the body and backs
            // off: a waiting call woken when this permit drops must not slip
            // into the same window. (A wait named only in the body is not known
            // yet: a short hold bridges the read.)
            let hold = match told {
                Some(told) => told.clamp(TOLD_HOLD_MIN, MAX_WAIT),
                None => UNTOLD_HOLD,
            };
            state.next = state.next.max(now + hold);
        } else {
            state.alone = false;
            if limits.remaining.is_none() && status.is_success() {
                // An answer without a budget: the origin (or the proxy in
                // front of it) announced one only on a refusal. Waiting for
                // an announcement before every overlap would make the rest
                // of the run serial.
                state.announces = false;
            }
            if state.serial {
                state.clean_answers += 1;
                if state.clean_answers >= SERIAL_RECOVERY_CALLS
                    && now >= state.throttled_at + SERIAL_RECOVERY
                {
                    tracing::info!("no throttle for a while: origin calls overlap again");
                    state.serial = false;
                }
            }
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.pacer.state().in_flight -= 1;
        self.pacer.changed.notify_waiters();
    }
}

fn record(origin: &str, remaining: u64, limit: Option<u64>, reset_in: Duration) {
    let now = crate::clock::now();
    let budget = Budget {
        remaining,
        limit,
        resets_at: now + chrono::Duration::from_std(reset_in).unwrap_or_default(),
        observed_at: now,
    };
    let mut budgets = BUDGETS.lock().unwrap_or_else(|e| e.into_inner());
    budgets.insert(crate::redact::url_without_credentials(origin), budget);
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    fn limits(remaining: u64, reset_ms: u64) -> Limits {
        Limits {
            limit: Some(10),
            remaining: Some(remaining),
            reset_in: Some(Duration::from_millis(reset_ms)),
            retry_after: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn spaces_calls_and_backs_everyone_off() {
        let pacer = Pacer::new(Duration::from_millis(100));
        let start = Instant::now();
        for _ in 0..3 {
            drop(pacer.acquire().await);
        }
        assert!(start.elapsed() >= Duration::from_millis(200));
        pacer.back_off(Duration::from_secs(5));
        let before = Instant::now();
        drop(pacer.acquire().await);
        assert!(before.elapsed() >= Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_in_flight_than_the_budget_left() {
        let pacer = Pacer::new(Duration::ZERO);
        let first = pacer.acquire().await;
        first.observe("o", StatusCode::OK, &limits(3, 2000));
        drop(first);
        // Three may start at once; the fourth waits for the reset.
        let held: Vec<_> = futures::future::join_all((0..3).map(|_| pacer.acquire())).await;
        let start = Instant::now();
        let fourth = tokio::time::timeout(Duration::from_secs(1), pacer.acquire()).await;
        assert!(fourth.is_err(), "a fourth call started within the window");
        drop(held);
        drop(pacer.acquire().await);
        assert!(start.elapsed() >= Duration::from_millis(1900));
        assert_eq!(budgets()["o"].remaining, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_count_the_calls_still_in_flight() {
        let pacer = Pacer::new(Duration::ZERO);
        let a = pacer.acquire().await;
        a.observe("o", StatusCode::OK, &limits(10, 5000));
        drop(a);
        let (b, c) = (pacer.acquire().await, pacer.acquire().await);
        // b's answer says 2 left; c is in flight and may not be counted: 1 may start.
        b.observe("o", StatusCode::OK, &limits(2, 5000));
        drop(b);
        let d = pacer.acquire().await;
        let e = tokio::time::timeout(Duration::from_secs(1), pacer.acquire()).await;
        assert!(e.is_err());
        drop((c, d));
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_reset_or_a_throttle_one_call_goes_alone() {
        let pacer = Pacer::new(Duration::ZERO);
        let a = pacer.acquire().await;
        a.observe("o", StatusCode::OK, &limits(5, 100));
        drop(a);
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The window is over: its budget is unknown until one answer comes.
        let alone = pacer.acquire().await;
        let second = tokio::time::timeout(Duration::from_secs(1), pacer.acquire()).await;
        assert!(second.is_err());
        alone.observe("o", StatusCode::OK, &limits(5, 3000));
        drop(alone);
        let both = (pacer.acquire().await, pacer.acquire().await);
        drop(both);

        // A throttle naming a wait holds every call back as soon as it is seen,
        // before its caller backs off.
        let told = pacer.acquire().await;
        let retry = Limits {
            retry_after: Some(Duration::from_secs(2)),
            ..limits(0, 2000)
        };
        told.observe("o", StatusCode::TOO_MANY_REQUESTS, &retry);
        drop(told);
        let before = Instant::now();
        drop(pacer.acquire().await);
        assert!(before.elapsed() >= Duration::from_millis(1900));

        // A throttle naming no budget: one call at a time from then on.
        let throttled = pacer.acquire().await;
        throttled.observe("o", StatusCode::TOO_MANY_REQUESTS, &Limits::default());
        drop(throttled);
        assert!(pacer.is_serial());
        let one = pacer.acquire().await;
        one.observe("o", StatusCode::OK, &Limits::default());
        let two = tokio::time::timeout(Duration::from_secs(1), pacer.acquire()).await;
        assert!(two.is_err());
        drop(one);

        // A clean stretch (enough answers, long enough) lets calls overlap again.
        for _ in 1..SERIAL_RECOVERY_CALLS {
            pacer
                .acquire()
                .await
                .observe("o", StatusCode::OK, &Limits::default());
        }
        assert!(pacer.is_serial(), "not before the time has passed too");
        tokio::time::advance(SERIAL_RECOVERY).await;
        pacer
            .acquire()
            .await
            .observe("o", StatusCode::OK, &Limits::default());
        assert!(!pacer.is_serial());

        // An answer that announces a budget ends the guessing at once.
        let throttled = pacer.acquire().await;
        throttled.observe("o", StatusCode::TOO_MANY_REQUESTS, &Limits::default());
        drop(throttled);
        assert!(pacer.is_serial());
        // (Another origin's name: budgets are kept per origin, process-wide.)
        pacer
            .acquire()
            .await
            .observe("elsewhere", StatusCode::OK, &limits(100, 60_000));
        assert!(!pacer.is_serial());
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_whose_window_resets_sooner_holds_calls_back_only_until_then() {
        let pacer = Pacer::new(Duration::ZERO);
        let a = pacer.acquire().await;
        a.observe("elsewhere", StatusCode::OK, &limits(1_000_000, 290_000));
        drop(a);
        // Another throttle of the server refuses, spent until 3 s from now.
        let refused = pacer.acquire().await;
        refused.observe("elsewhere", StatusCode::TOO_MANY_REQUESTS, &limits(0, 3000));
        drop(refused);
        let before = Instant::now();
        let next = pacer.acquire().await;
        let waited = before.elapsed();
        assert!(waited >= Duration::from_millis(2900), "{waited:?}");
        assert!(
            waited < Duration::from_secs(10),
            "waited for the other window: {waited:?}"
        );
        drop(next);
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_announced_only_on_a_refusal_does_not_make_calls_serial() {
        let pacer = Pacer::new(Duration::ZERO);
        let refused = pacer.acquire().await;
        let spent = Limits {
            retry_after: Some(Duration::from_secs(1)),
            ..limits(0, 1000)
        };
        refused.observe("elsewhere", StatusCode::TOO_MANY_REQUESTS, &spent);
        drop(refused);
        tokio::time::advance(Duration::from_secs(2)).await;
        // After the reset one call goes alone; its answer carries no budget…
        let alone = pacer.acquire().await;
        let second = tokio::time::timeout(Duration::from_millis(10), pacer.acquire()).await;
        assert!(second.is_err(), "a second call overlapped the lone one");
        alone.observe("elsewhere", StatusCode::OK, &Limits::default());
        drop(alone);
        // …so calls overlap again.
        let overlapping = tokio::time::timeout(
            Duration::from_millis(10),
            futures::future::join(pacer.acquire(), pacer.acquire()),
        )
        .await;
        assert!(overlapping.is_ok(), "calls stayed one at a time");
    }
}
