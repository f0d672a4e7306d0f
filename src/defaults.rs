//! Every default of slotfill's settings, in this one place: the config file's
//! keys, the command line's flags and serve's. Documentation (README, docs/)
//! quotes these values; change them here and there together.

// ---- A dataset ([datasets.X]) ----

/// Minutes per slot (`slot_minutes`).
pub const SLOT_MINUTES: u32 = 10;
/// The offset slots and day prefixes are cut in (`utc_offset`).
pub const UTC_OFFSET: &str = "+09:00";
/// Object keys (`key_template`).
pub const KEY_TEMPLATE: &str = "%Y/%m/%d/%H/%Y-%m-%d_%H-%M.jsonl";
/// A slot is pending until this long after its end (`settle_delay`).
pub const SETTLE_DELAY: &str = "5m";
/// A confirmed-empty slot is fetched again after this long (`empty_recheck_after`).
pub const EMPTY_RECHECK_AFTER: &str = "7d";

// ---- Scan and fill (the command line, and serve's runs) ----

/// Days scanned at once, and S3 requests in flight (`--concurrency` of scan and
/// verify, `--scan-concurrency` of run).
pub const SCAN_CONCURRENCY: usize = 8;
/// Slots fetched at once (`--concurrency` of fill and run), and promote's copies.
pub const FILL_CONCURRENCY: usize = 4;
/// A fill stops after this many failed slots in a row (`--max-failures`).
pub const MAX_CONSECUTIVE_FAILURES: u32 = 5;

// ---- An origin ([datasets.X.source], and the flags that override it) ----

/// The origin's kind when `kind` is not given.
pub const SOURCE_KIND: &str = "misskey";
/// Seconds between origin calls (`--sleep`).
pub const SLEEP: f64 = 0.0;
/// Retries of a failed call (`--retry`).
pub const RETRIES: u32 = 5;
/// Base seconds of the exponential backoff (`--retry-wait`).
pub const RETRY_WAIT: f64 = 2.0;
/// Seconds before a call times out (`--timeout`).
pub const TIMEOUT: f64 = 60.0;
/// Pages one slot may take before its fetch counts as partial (`--max-pages`).
pub const MAX_PAGES: u32 = 2000;
/// Seconds a rate-limit answer without a wait of its own backs off at most
/// (`rate_limit_wait_cap`).
pub const RATE_LIMIT_WAIT_CAP: f64 = 60.0;
/// The Misskey endpoint read (`mode`).
pub const MISSKEY_MODE: &str = "search";
/// The variable the Misskey token is read from (`token_env`).
pub const MISSKEY_TOKEN_ENV: &str = "MISSKEY_TOKEN";
/// The variable the Mastodon token is read from (`token_env`).
pub const MASTODON_TOKEN_ENV: &str = "MASTODON_TOKEN";
/// How a slot of a federated Mastodon timeline claims a status (`slot_by`).
pub const SLOT_BY: &str = "created_at";
/// How late a federated status may be delivered and still be found in its
/// slot under `slot_by = "created_at"` (`federation_lag`): Mastodon retries a
/// failed delivery after about 15 s, 30 s, 1 min, 1.5 min and 4.5 min, so 10
/// minutes covers five retries.
pub const FEDERATION_LAG: &str = "10m";

// ---- slotfill serve ([serve], [datasets.X.freshness]) ----

/// Where the server listens (`listen`, `--listen`).
pub const LISTEN: &str = "127.0.0.1:8080";
/// The variable holding the API token (`token_env`).
pub const API_TOKEN_ENV: &str = "SLOTFILL_API_TOKEN";
/// A slot still a gap this long after its end is overdue (`grace`).
pub const GRACE: &str = "15m";
/// How often the freshness watch lists the newest day prefixes (`check_every`).
pub const CHECK_EVERY: &str = "5m";
/// The watch alerts when the collector's newest valid object is older than this (`alert_after`).
pub const ALERT_AFTER: &str = "30m";
