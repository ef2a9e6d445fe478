//! The sidecar, measured: time to the first complete write of 10 secrets,
//! RSS while it rotates them, rotation propagation, binary size. Runs the
//! binary the images carry (the `sidecar` profile) against the Key Vault
//! emulator on loopback, with `--store aws` against moto (from the venv
//! `tests/moto/run.sh` builds; Secrets Manager, static keys), or with
//! `--store vault` against OpenBao (`bao server -dev` from the venv
//! `tests/openbao/run.sh` builds; kv-v2, a token):
//!
//!   cargo build --release -p load && cargo build --profile sidecar -p secret-injector-sidecar
//!   target/release/sidecar-bench
//!   target/release/sidecar-bench --store aws
//!   target/release/sidecar-bench --store vault
//!
//! With `--against-agent` (Vault only) it runs our sidecar beside Vault
//! Agent (`bao agent`) against the same OpenBao for `--duration` (600 s) and
//! prints both tools' figures, their ratio and the goals (against_agent.rs):
//!
//!   target/release/sidecar-bench --store vault --against-agent [--duration 60s]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use kv_emulator::{Emulator, EmulatorConfig};

mod against_agent;

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
    /// The store: azure (the Key Vault emulator) or aws (moto).
    #[arg(long, default_value = "azure", value_parser = ["azure", "aws", "vault"])]
    store: String,
    /// The moto venv, for --store aws.
    #[arg(
        long,
        env = "MOTO_VENV",
        default_value = "/var/cache/secret-injector/moto-venv"
    )]
    moto_venv: PathBuf,
    /// The OpenBao venv, for --store vault.
    #[arg(
        long,
        env = "OPENBAO_VENV",
        default_value = "/var/cache/secret-injector/openbao-venv"
    )]
    openbao_venv: PathBuf,
    /// With --store vault: our sidecar beside `bao agent` (Vault Agent) in one
    /// run, both tools' figures and their ratio.
    #[arg(long)]
    against_agent: bool,
    /// With --against-agent: the polling window over which CPU and RSS are
    /// measured and changes propagated (Go-style: 600s, 10m).
    #[arg(long, default_value = "600s", value_parser = duration)]
    duration: Duration,
    /// With --against-agent: the sidecar's rotation and the agent's
    /// static_secret_render_interval, whole seconds, at least 5s (the
    /// sidecar's minimum).
    #[arg(long, default_value = "5s", value_parser = duration)]
    interval: Duration,
    /// With --against-agent: how many times secret-0 gets a new version
    /// during the window (fewer if the window is too short for them).
    #[arg(long, default_value_t = 15)]
    changes: usize,
}

fn duration(s: &str) -> Result<Duration, String> {
    shared::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?}: use whole seconds with units h, m, s (600s, 10m)"))
}

/// `bao server -dev` on loopback; `bao kv put` writes to it.
struct Bao {
    child: Child,
    address: String,
    venv: PathBuf,
}

const BAO_TOKEN: &str = "bench-root";

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bao {
    fn start(venv: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(venv.join("bin/bao"))
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-root-token-id={BAO_TOKEN}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "bao from {} (run tests/openbao/run.sh once)",
                    venv.display()
                )
            })?;
        let bao = Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
            venv: venv.to_owned(),
        };
        wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })?;
        // Listening comes before the dev mounts exist: wait for a first write.
        wait_until(Duration::from_secs(30), || bao.put("probe", "x").is_ok())?;
        Ok(bao)
    }

    fn put(&self, name: &str, value: &str) -> anyhow::Result<()> {
        let ok = Command::new(self.venv.join("bin/bao"))
            .args([
                "kv",
                "put",
                &format!("secret/{name}"),
                &format!("v={value}"),
            ])
            .env("BAO_ADDR", &self.address)
            .env("BAO_TOKEN", BAO_TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success();
        if !ok {
            bail!("bao kv put secret/{name} failed");
        }
        Ok(())
    }
}

/// moto on loopback, with boto3 (tests/moto/fixture.py) writing to it.
struct Moto {
    child: Child,
    endpoint: String,
    venv: PathBuf,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    fn start(venv: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "moto_server from {} (run tests/moto/run.sh once)",
                    venv.display()
                )
            })?;
        wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })?;
        Ok(Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            venv: venv.to_owned(),
        })
    }

    fn boto3(&self, calls: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../moto/fixture.py");
        let mut child = Command::new(self.venv.join("bin/python"))
            .arg(script)
            .arg(&self.endpoint)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(calls.as_bytes())?;
        if !child.wait()?.success() {
            bail!("boto3 failed: {calls}");
        }
        Ok(())
    }
}

/// Where the sidecar fetches from, and how it is told.
enum Target {
    Azure { ca: PathBuf, port: u16 },
    Aws { endpoint: String },
    Vault { address: String },
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

fn spawn(bin: &Path, spec: &str, target: &Target) -> anyhow::Result<Sidecar> {
    let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir())?;
    let mut cmd = Command::new(bin);
    cmd.args(["run", "--dir"])
        .arg(dir.path())
        .env_clear()
        .env("SECRET_INJECTOR_SPEC", spec)
        .env("SECRET_INJECTOR_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match target {
        Target::Azure { ca, port } => {
            cmd.arg("--ca-bundle")
                .arg(ca)
                .arg("--resolve")
                .arg(format!(
                    "{VAULT}.vault.azure.net=127.0.0.1:{port},login.microsoftonline.com=127.0.0.1:{port}"
                ))
                .env("AZURE_TENANT_ID", TENANT)
                .env("AZURE_CLIENT_ID", CLIENT)
                .env("AZURE_CLIENT_SECRET", SECRET);
        }
        Target::Aws { endpoint } => {
            cmd.env("AWS_ENDPOINT_URL", endpoint)
                .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
                .env("AWS_SECRET_ACCESS_KEY", "bench-secret-key")
                .env("AWS_EC2_METADATA_DISABLED", "true");
        }
        Target::Vault { address } => {
            cmd.env("VAULT_ADDR", address).env("VAULT_TOKEN", BAO_TOKEN);
        }
    }
    Ok(Sidecar {
        child: cmd.spawn()?,
        dir,
    })
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
    let secrets = args.secrets;
    if args.against_agent {
        if args.store != "vault" {
            bail!("--against-agent compares with Vault Agent: use --store vault");
        }
        if args.interval < shared::MIN_ROTATION_INTERVAL {
            bail!("--interval: at least 5s (the sidecar's minimum rotation)");
        }
        let bao = Bao::start(&args.openbao_venv)?;
        for i in 0..secrets {
            bao.put(&format!("secret-{i}"), &format!("value-{i}"))?;
        }
        return against_agent::run(
            against_agent::Options {
                sidecar_bin: bin,
                bao_bin: args.openbao_venv.join("bin/bao"),
                secrets,
                starts: args.starts,
                duration: args.duration,
                interval: args.interval,
                changes: args.changes,
            },
            &bao,
        );
    }
    let mut emulator = None;
    let mut moto = None;
    let mut bao = None;
    let work = tempfile::tempdir()?;
    let (target, source, server): (Target, Box<dyn Fn(usize) -> String>, &str) = match args
        .store
        .as_str()
    {
        "aws" => {
            let m = Moto::start(&args.moto_venv)?;
            let creates: Vec<String> = (0..secrets)
                    .map(|i| {
                        format!(
                            r#"{{"service":"secretsmanager","op":"create_secret","args":{{"Name":"secret-{i}","SecretString":"value-{i}"}}}}"#
                        )
                    })
                    .collect();
            m.boto3(&format!("[{}]", creates.join(",")))?;
            let endpoint = m.endpoint.clone();
            moto = Some(m);
            (
                Target::Aws { endpoint },
                Box::new(|i| format!("aws://us-east-1/secret-{i}")),
                "moto (AWS Secrets Manager, static keys)",
            )
        }
        "vault" => {
            let b = Bao::start(&args.openbao_venv)?;
            for i in 0..secrets {
                b.put(&format!("secret-{i}"), &format!("value-{i}"))?;
            }
            let address = b.address.clone();
            bao = Some(b);
            (
                Target::Vault { address },
                Box::new(|i| format!("vault://secret/secret-{i}#v")),
                "OpenBao (bao server -dev, kv-v2, a token)",
            )
        }
        _ => {
            let config = EmulatorConfig {
                default_vault: VAULT.into(),
                tenant_id: TENANT.into(),
                authority_host: Some("https://login.microsoftonline.com".into()),
                extra_names: vec![
                    "*.vault.azure.net".into(),
                    "login.microsoftonline.com".into(),
                ],
                client_secrets: BTreeMap::from([(CLIENT.into(), SECRET.into())]),
                seeds: (0..secrets)
                    .map(|i| (VAULT.into(), format!("secret-{i}"), format!("value-{i}")))
                    .collect(),
                ..Default::default()
            };
            let e = Emulator::start(config).await?;
            let ca = work.path().join("ca.pem");
            e.write_ca_pem(&ca)?;
            let port = e.addr().port();
            emulator = Some(e);
            (
                Target::Azure { ca, port },
                Box::new(|i| format!("azure://{VAULT}/secrets/secret-{i}")),
                "the Key Vault emulator",
            )
        }
    };
    let objects: Vec<String> = (0..secrets)
        .map(|i| format!(r#"{{"file":"secret-{i}","source":"{}"}}"#, source(i)))
        .collect();
    let spec = format!(
        r#"{{"objects":[{}],"mountPath":"/mnt/secrets-store","rotation":"5s","filePermission":"0644"}}"#,
        objects.join(",")
    );

    println!(
        "sidecar-bench: {} against {server} on 127.0.0.1 (same machine, 2 cores)",
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
        let sidecar = spawn(&bin, &spec, &target)?;
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
    let sidecar = spawn(&bin, &spec, &target)?;
    let pid = sidecar.child.id();
    let data = sidecar.dir.path().join("..data");
    wait_until(Duration::from_secs(30), || data.exists())?;
    let mut propagation = Vec::new();
    let file = sidecar.dir.path().join("secret-0");
    for i in 0..args.rotations {
        let value = format!("rotated-{i}");
        let set_at = match (&emulator, &moto) {
            _ if bao.is_some() => {
                if let Some(b) = &bao {
                    b.put("secret-0", &value)?;
                }
                Instant::now()
            }
            (Some(e), _) => {
                let set_at = Instant::now();
                e.state().set_secret(VAULT, "secret-0", &value)?;
                set_at
            }
            (None, Some(m)) => {
                m.boto3(&format!(
                    r#"[{{"service":"secretsmanager","op":"put_secret_value","args":{{"SecretId":"secret-0","SecretString":"{value}"}}}}]"#
                ))?;
                // From when boto3's call returned: its own start is not the sidecar's time.
                Instant::now()
            }
            (None, None) => bail!("no store"),
        };
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
    if let Some(e) = emulator {
        e.shutdown().await;
    }
    drop(moto);
    Ok(())
}
