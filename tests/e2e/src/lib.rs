//! What the real-pod tests (`tests/pods/`) share, run inside the cluster's
//! network namespace by `tests/e2e/pods.sh`, which brings the cluster, the
//! webhook and the stores' servers up and sets the variables read here.
//!
//! - [`cluster`]: a namespace per test (opted in to CSI conversion, with the
//!   pod Role), apply of unchanged manifests, waits, exec, Secrets, PodStatus.
//! - [`store`]: what a store's fixture does for the shared checks (change a
//!   value, take the store down and bring it back), one module per store.
//! - [`suite`]: the checks every store passes (files, synced Secrets feeding
//!   env, PodStatus versions, rotation within interval + 1 s, outage).
//!
//! The admission tests (`tests/admission.rs`, `tests/managed_tls.rs`) need
//! no pods and keep their own helpers.

pub mod cluster;
pub mod store;
pub mod suite;

use std::time::{Duration, Instant};

/// A variable `pods.sh` sets; its absence says how to run these tests.
pub fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).map_err(|_| {
        anyhow::anyhow!("{name} is not set: run these tests through tests/e2e/pods.sh")
    })
}

/// Polls `probe` until it returns `want` or `within` has passed; the time it
/// took, or an error naming what was last seen.
pub async fn eventually<F, Fut>(
    what: &str,
    within: Duration,
    want: &str,
    mut probe: F,
) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    let start = Instant::now();
    let mut last = String::from("nothing yet");
    while start.elapsed() < within {
        match probe().await {
            Ok(got) if got == want => return Ok(start.elapsed()),
            Ok(got) => last = format!("{got:?}"),
            Err(e) => last = format!("error: {e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("{what}: not {want:?} within {within:?}; last {last}")
}
