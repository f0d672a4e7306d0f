//! How far a run in progress has got, for the dashboard and `/api/runs/{id}`.

use std::sync::atomic::{AtomicU8, Ordering};

/// How far a run in progress has got, for the dashboard and `/api/runs/{id}`.
#[derive(Debug, Default)]
pub struct RunProgress {
    phase: AtomicU8,
}

impl RunProgress {
    const PHASES: [&'static str; 5] = ["starting", "scanning", "filling", "verifying", "done"];

    /// `starting`, `scanning`, `filling`, `verifying` or `done`.
    pub fn phase(&self) -> &'static str {
        Self::PHASES[usize::from(self.phase.load(Ordering::Relaxed)).min(4)]
    }

    pub fn enter(&self, name: &str) {
        if let Some(i) = Self::PHASES.iter().position(|p| *p == name) {
            self.phase.store(i as u8, Ordering::Relaxed);
        }
    }

    /// The pipeline reports each stage as it finishes: scan, fill, verify.
    pub fn stage_done(&self) {
        let next = (self.phase.load(Ordering::Relaxed) + 1).min(4);
        self.phase.store(next, Ordering::Relaxed);
    }
}
