//! The integration tests: one binary, a module per area. Each test runs the
//! real `slotfill` binary against a real S3 server (SeaweedFS behind a
//! counting proxy), a real SQLite catalog and an emulated Misskey or Mastodon.

mod support;

mod archive;
mod bad_input;
mod bench_smoke;
mod crash;
mod faults;
mod federation;
mod fill;
mod fill_cost;
mod http_toolkit;
mod leases;
mod mastodon;
mod memory;
mod nightly;
mod objects;
mod origins;
mod pacing;
mod promote;
mod proof;
mod scan;
mod scan_order;
mod scope;
mod secrets;
mod serve;
mod signals;
