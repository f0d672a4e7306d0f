//! `slotfill serve` (issues 10, 19 and 21). The real process driven over a
//! real socket, against the real S3 server, the Misskey emulator, a local
//! webhook receiver and a real browser; and the routes answered in process
//! (`tower::ServiceExt::oneshot`), where the API is described and fuzzed.
//! Effects are asserted where they happen: run records, incidents and slot
//! states in the catalog, objects in the buckets, calls at the emulator,
//! posts at the webhook, the rendered page.

mod api;
mod dashboard;
mod events;
mod fuzz;
mod http;
mod lifecycle;
mod schedule;
mod watch;
