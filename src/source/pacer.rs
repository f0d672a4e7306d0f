//! One pacer for every origin call of a run, however many slots are fetched at once.
//!
//! `--sleep` spaces calls out; a rate-limit answer pushes the next allowed
//! call for *everyone* past the server's reset time, so concurrent fetchers
//! never hammer an origin that asked them to wait (Misskey records rejected
//! calls too, so hammering would only extend the block).

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

pub struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    pub fn new(interval: Duration) -> Self {
        Pacer {
            interval,
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this caller's turn.
    pub async fn wait_turn(&self) {
        let mut next = self.next.lock().await;
        let now = Instant::now();
        if *next > now {
            tokio::time::sleep_until(*next).await;
        }
        *next = Instant::now().max(*next) + self.interval;
    }

    /// Holds every caller back for `wait` from now.
    pub async fn back_off(&self, wait: Duration) {
        let mut next = self.next.lock().await;
        let until = Instant::now() + wait;
        if until > *next {
            *next = until;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_calls_and_backs_everyone_off() {
        let pacer = Pacer::new(Duration::from_millis(100));
        let start = Instant::now();
        for _ in 0..3 {
            pacer.wait_turn().await;
        }
        assert!(start.elapsed() >= Duration::from_millis(200));
        pacer.back_off(Duration::from_secs(5)).await;
        let before = Instant::now();
        pacer.wait_turn().await;
        assert!(before.elapsed() >= Duration::from_secs(4));
    }
}
