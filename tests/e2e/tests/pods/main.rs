//! Real pods, one namespace per store: the store's CSI provider's own
//! manifests applied unchanged, then the shared checks of `e2e::suite`.
//! Run inside the cluster's network namespace by `tests/e2e/pods.sh`, which
//! brings up the cluster, the webhook and the stores' servers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod aws;
mod azure;
mod vault;

use std::time::Duration;

use e2e::env;

fn interval() -> Duration {
    Duration::from_secs(env("E2E_INTERVAL").unwrap().parse().unwrap())
}

/// `Ok` when `got` is `want`, else an error showing both.
fn same(got: impl AsRef<str>, want: impl AsRef<str>) -> anyhow::Result<()> {
    let (got, want) = (got.as_ref(), want.as_ref());
    anyhow::ensure!(got == want, "{got:?}, not {want:?}");
    Ok(())
}

/// `Ok` when `text` contains `part`, else an error showing the text's end.
fn has(text: &anyhow::Result<String>, part: &str) -> anyhow::Result<()> {
    match text {
        Ok(text) if text.contains(part) => Ok(()),
        Ok(text) => {
            let tail = text.len().saturating_sub(800);
            let tail = text.get(tail..).unwrap_or(text);
            anyhow::bail!("{part:?} not in ...{tail}")
        }
        Err(e) => anyhow::bail!("{e:#}"),
    }
}

/// `Ok` when `cond` holds, else `why`.
fn holds(cond: bool, why: impl FnOnce() -> String) -> anyhow::Result<()> {
    anyhow::ensure!(cond, "{}", why());
    Ok(())
}
