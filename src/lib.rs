//! slotfill: keeps time-slotted JSON Lines datasets in object storage complete.
//!
//! The pipeline is scan → fill → verify (→ promote) over a SQLite catalog. Each concept has
//! its module: [`slot`] (time and keys), [`config`], [`catalog`], [`store`]
//! (S3 and local directories), [`location`] (a location opened, and what one
//! object of it holds), [`scan`], [`source`] (the origin API), [`fill`], and
//! [`report`]. [`run`] opens, carries out and records a run; the two front ends
//! over it are [`commands`] (what the CLI runs) and [`serve`] (the always-on
//! mode). [`defaults`] holds every default.

pub mod catalog;
pub mod clock;
pub mod commands;
pub mod config;
pub mod defaults;
pub mod error;
pub mod fill;
pub mod location;
pub mod logging;
pub mod notify;
pub mod progress;
pub mod promote;
pub mod redact;
pub mod report;
pub mod run;
pub mod scan;
pub mod serve;
pub mod slot;
pub mod source;
pub mod state;
pub mod store;
pub mod text;
