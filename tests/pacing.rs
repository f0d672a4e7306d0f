//! One pacer for every rate-limit form (misskey-api.md §4, §7, §9): at the
//! default concurrency against a limit of 4 calls a second, a fill never has
//! more calls in flight than the announced budget and draws no 429 where
//! the budget is announced. Where only `Retry-After` says anything, nothing
//! warns of the limit before the first refusal, so the calls already in
//! flight then may be refused with it; from then on the origin is called one
//! at a time, and every later window draws one refusal at most. The refusals
//! are counted at the emulator, by window.

use std::time::Duration;

use crate::support::fediverse::{Fixture, ids, slots};
use crate::support::mastodon::{
    MastodonConfig, MastodonEmulator, RateLimitForm, ServerKind, Throttle, mixed_statuses,
};
use crate::support::*;

const LIMIT: u64 = 4;

/// Fills 4 slots (about 20 calls) through a limit of 4 calls a second given
/// in `form`; returns the emulator after checking every slot is exact.
fn pacing_case(kind: ServerKind, form: RateLimitForm) -> MastodonEmulator {
    let e = MastodonEmulator::start(MastodonConfig {
        kind,
        rate_limit_form: form,
        throttles: vec![Throttle {
            limit: LIMIT,
            period_secs: 1,
            paging_only: false,
        }],
        // Each answer takes a while, so the fill's concurrent calls overlap.
        answer_delay: Duration::from_millis(30),
        ..Default::default()
    });
    let window = slots(AUG1_JST, 4);
    for (i, &slot) in window.iter().enumerate() {
        e.add_statuses(mixed_statuses(
            slot * 1000,
            (slot + SLOT) * 1000,
            250,
            300 + i as u64,
        ));
    }
    let f = Fixture::new(&e, "local", "");
    let out = f.fill(window[0], window[3], &["-v"]).ok();
    for &slot in &window {
        let want = e.expected("local", slot * 1000, (slot + SLOT) * 1000);
        assert_eq!(ids(&f.slot(slot).expect("object")), ids(&want), "{form:?}");
    }
    if std::env::var("PACING_DEBUG").is_ok() {
        eprintln!("{}", out.stderr);
    }
    eprintln!(
        "{form:?}: {} calls, {} refused, at most {} in flight",
        e.calls(),
        e.throttled(),
        e.most_in_flight()
    );
    assert!(
        e.calls() >= 16,
        "{form:?}: {} calls spend the budget too rarely",
        e.calls()
    );
    if e.throttled() == 0 {
        assert!(
            !out.stderr.contains("origin rate limit: waiting"),
            "{}",
            out.stderr
        );
    }
    e
}

/// Forms that announce the budget: never overdrawn, so no refusal at all,
/// and the calls overlapped as far as the budget let them.
fn announced(kind: ServerKind, form: RateLimitForm) {
    let e = pacing_case(kind, form);
    assert_eq!(e.throttled(), 0, "{form:?}: refusals");
    let most = e.most_in_flight();
    assert!((2..=LIMIT).contains(&most), "{form:?}: {most} in flight");
}

/// Forms that only name a wait once refused: the first refusal may come
/// with one for each call in flight (4 at most), then one a window at most.
fn unannounced(kind: ServerKind, form: RateLimitForm) {
    let e = pacing_case(kind, form);
    let windows = e.refusals_per_window();
    assert!(
        windows.len() >= 2,
        "{form:?}: the limit was met in {windows:?} windows"
    );
    assert!(windows[0] <= 4, "{form:?}: {windows:?}");
    assert!(
        windows[1..].iter().all(|n| *n <= 1),
        "{form:?}: refusals by window {windows:?}"
    );
}

#[test]
fn mastodon_iso_resets_are_never_overdrawn() {
    announced(ServerKind::Mastodon, RateLimitForm::MastodonIso);
}

#[test]
fn gotosocial_iso_resets_of_whole_seconds_are_never_overdrawn() {
    announced(ServerKind::GoToSocial, RateLimitForm::GoToSocialIso);
}

#[test]
fn unix_second_resets_are_never_overdrawn() {
    announced(ServerKind::Mastodon, RateLimitForm::UnixSeconds);
}

#[test]
fn sharkeys_relative_resets_and_its_bucket_are_never_overdrawn() {
    announced(ServerKind::Sharkey, RateLimitForm::SharkeyRelative);
}

#[test]
fn retry_after_seconds_draws_at_most_one_429_a_window() {
    unannounced(ServerKind::Mastodon, RateLimitForm::RetryAfterSeconds);
}

#[test]
fn retry_after_dates_draw_at_most_one_429_a_window() {
    unannounced(ServerKind::Mastodon, RateLimitForm::RetryAfterDate);
}

#[test]
fn gotosocials_throttling_503_draws_at_most_one_a_window() {
    unannounced(ServerKind::GoToSocial, RateLimitForm::Throttle503);
}
