//! The sidecar, measured: time to the first complete write of 10 secrets,
//! RSS while it rotates them, rotation propagation, binary size. Runs the
//! binary the images carry (the `sidecar` profile) against the Key Vault
//! emulator on loopback:
//!
//!   cargo build --release -p load && cargo build --profile sidecar -p secret-injector-sidecar
//!   target/release/sidecar-bench

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use kv_emulator::{Emulator, EmulatorConfig};

const VAULT: &str = "kv-bench";
const TENANT: &str = "00000000-0000-0000-0000-00000000000a";
const CLIENT: &str = "00000000-0000-0000-0000-000000000001";
const SECRET: &str = "bench-client-secret";

#[derive(Parser)]
struct Args {
    /// The sidecar binary (default: the `sidecar` profile's, target/sidecar/).
    #[arg(long)]
    sidecar_bin: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    secrets: usize,
    /// Cold starts to time.
    #[arg(long, default_value_t = 5)]
    starts: usize,
    /// Rotations to time (rotation interval 5s).
    #[arg(long, default_value_t = 5)]
    rotations: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} for {pid}"))
}

struct Sidecar {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(bin: &Path, spec: &str, ca: &Path, port: u16) -> anyhow::Result<Sidecar> {
    let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir())?;
    let child = Command::new(bin)
        .args(["run", "--dir"])
        .arg(dir.path())
        .arg("--ca-bundle")
        .arg(ca)
        .arg("--resolve")
        .arg(format!(
            "{VAULT}.vault.azure.net=127.0.0.1:{port},login.microsoftonline.com=127.0.0.1:{port}"
        ))
        .env_clear()
        .env("SECRET_INJECTOR_SPEC", spec)
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_CLIENT_ID", CLIENT)
        .env("AZURE_CLIENT_SECRET", SECRET)
        .env("SECRET_INJECTOR_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Sidecar { child, dir })
}

fn wait_until(deadline: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    while !done() {
        if Instant::now() > until {
            bail!("timed out");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    let bin = match args.sidecar_bin {
        Some(b) => b,
        // target/release/sidecar-bench -> target/sidecar/secret-injector-sidecar
        None => std::env::current_exe()?
            .with_file_name("..")
            .join("sidecar")
            .join("secret-injector-sidecar"),
    };
    let config = EmulatorConfig {
        default_vault: VAULT.into(),
        tenant_id: TENANT.into(),
        authority_host: Some("https://login.microsoftonline.com".into()),
        extra_names: vec![
            "*.vault.azure.net".into(),
            "login.microsoftonline.com".into(),
        ],
        client_secrets: BTreeMap::from([(CLIENT.into(), SECRET.into())]),
        seeds: (0..args.secrets)
            .map(|i| (VAULT.into(), format!("secret-{i}"), format!("value-{i}")))
            .collect(),
        ..Default::default()
    };
    let emulator = Emulator::start(config).await?;
    let work = tempfile::tempdir()?;
    let ca = work.path().join("ca.pem");
    emulator.write_ca_pem(&ca)?;
    let port = emulator.addr().port();
    let objects: Vec<String> = (0..args.secrets)
        .map(|i| {
            format!(r#"{{"file":"secret-{i}","source":"azure://{VAULT}/secrets/secret-{i}"}}"#)
        })
        .collect();
    let spec = format!(
        r#"{{"objects":[{}],"mountPath":"/mnt/secrets-store","rotation":"5s","filePermission":"0644"}}"#,
        objects.join(",")
    );

    println!(
        "sidecar-bench: {} against the Key Vault emulator on 127.0.0.1 (same machine, 2 cores)",
        bin.display()
    );
    println!(
        "binary size: {:.1} MiB",
        std::fs::metadata(&bin)?.len() as f64 / 1048576.0
    );

    // Cold start to the first complete write: process start, token, 10 fetches, write.
    let mut firsts = Vec::new();
    for _ in 0..args.starts {
        let started = Instant::now();
        let sidecar = spawn(&bin, &spec, &ca, port)?;
        let data = sidecar.dir.path().join("..data");
        wait_until(Duration::from_secs(30), || data.exists())?;
        firsts.push(started.elapsed());
    }
    firsts.sort();
    println!(
        "first complete write of {} secrets (process start included), {} cold starts: median {:.1} ms, max {:.1} ms (goal <= 200 ms)",
        args.secrets,
        args.starts,
        percentile(&firsts, 0.5).as_secs_f64() * 1e3,
        firsts
            .last()
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or_default()
    );

    // One long-lived sidecar: RSS while rotating, and how fast a rotation lands.
    let sidecar = spawn(&bin, &spec, &ca, port)?;
    let pid = sidecar.child.id();
    let data = sidecar.dir.path().join("..data");
    wait_until(Duration::from_secs(30), || data.exists())?;
    let mut propagation = Vec::new();
    let file = sidecar.dir.path().join("secret-0");
    for i in 0..args.rotations {
        let value = format!("rotated-{i}");
        let set_at = Instant::now();
        emulator.state().set_secret(VAULT, "secret-0", &value)?;
        wait_until(Duration::from_secs(30), || {
            std::fs::read_to_string(&file)
                .map(|v| v == value)
                .unwrap_or(false)
        })?;
        propagation.push(set_at.elapsed());
    }
    propagation.sort();
    println!(
        "rotation propagation (interval 5s ± 10%), {} rotations: median {:.2} s, max {:.2} s",
        args.rotations,
        percentile(&propagation, 0.5).as_secs_f64(),
        propagation
            .last()
            .map(|d| d.as_secs_f64())
            .unwrap_or_default()
    );
    println!(
        "RSS with {} secrets after {} rotations: {:.1} MiB now, {:.1} MiB peak (goal <= 10 MB)",
        args.secrets,
        args.rotations,
        kib(pid, "VmRSS:")? as f64 / 1024.0,
        kib(pid, "VmHWM:")? as f64 / 1024.0
    );
    println!(
        "  of which anonymous (heap, stacks) {:.1} MiB, file-backed (the binary's pages) {:.1} MiB",
        kib(pid, "RssAnon:")? as f64 / 1024.0,
        kib(pid, "RssFile:")? as f64 / 1024.0
    );
    drop(sidecar);
    emulator.shutdown().await;
    Ok(())
}
