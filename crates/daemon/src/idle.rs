//! berthd gives back memory when it has been idle for a while: the pages of code and data a
//! burst of requests touched (pulls, builds, many container starts) and malloc's free heap
//! (see `berth_runtime::trim`). The next request faults back what it needs from the page
//! cache, so the cost is a few minor faults once, after a quiet period.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bumped by every API request (`http::version_mw`).
static ACTIVITY: AtomicU64 = AtomicU64::new(0);

/// How long without a request before trimming: two consecutive checks this far apart.
const QUIET: Duration = Duration::from_secs(5);

pub fn touch() {
    ACTIVITY.fetch_add(1, Ordering::Relaxed);
}

/// Runs for the daemon's life; trims once per quiet period.
pub async fn trimmer() {
    let mut last = ACTIVITY.load(Ordering::Relaxed);
    let mut trimmed = None;
    loop {
        tokio::time::sleep(QUIET).await;
        let now = ACTIVITY.load(Ordering::Relaxed);
        if now == last && trimmed != Some(now) {
            trimmed = Some(now);
            if let Ok(bytes) = tokio::task::spawn_blocking(berth_runtime::trim::trim).await {
                tracing::debug!(file_bytes = bytes, "idle: memory trimmed");
            }
        }
        last = now;
    }
}
