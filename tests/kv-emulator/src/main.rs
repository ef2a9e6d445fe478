//! `kv-emulator`: the Key Vault + Entra emulator as a process. Prints one line
//! `listening on https://<ip>:<port>` on stdout when ready; stops on SIGINT/SIGTERM.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kv_emulator::{DEFAULT_TENANT, DEFAULT_VAULT, Emulator, EmulatorConfig};

#[derive(Parser, Debug)]
#[command(
    name = "kv-emulator",
    about = "Azure Key Vault data plane + Entra ID token emulator (HTTPS, for tests)"
)]
struct Args {
    /// Address to listen on (port 0 = a free port; the line printed names it).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Write the test CA (PEM) that signed the serving certificate here.
    #[arg(long)]
    ca_out: Option<PathBuf>,
    /// Vault served for IP / localhost Host headers.
    #[arg(long, default_value = DEFAULT_VAULT)]
    default_vault: String,
    /// Tenant id the token endpoints accept and the 401 challenge names.
    #[arg(long, default_value = DEFAULT_TENANT)]
    tenant: String,
    /// Authority host named in the 401 challenge (default: this emulator's URL).
    #[arg(long)]
    authority_host: Option<String>,
    /// CLIENT_ID=SECRET accepted by the token endpoint (repeatable).
    #[arg(long = "client-secret", value_name = "CLIENT_ID=SECRET")]
    client_secrets: Vec<String>,
    /// PEM public key trusted to sign federated assertions (repeatable).
    #[arg(long = "federated-key", value_name = "PEM_PATH")]
    federated_keys: Vec<PathBuf>,
    /// CLIENT_ID=SUBJECT allowed for a client's federated assertions (repeatable;
    /// a client without any accepts every subject).
    #[arg(long = "federated-subject", value_name = "CLIENT_ID=SUBJECT")]
    federated_subjects: Vec<String>,
    /// Expected X-IDENTITY-HEADER of /msi/token (managed identity off without it).
    #[arg(long)]
    identity_header: Option<String>,
    /// Also serve the IMDS token endpoint (plain HTTP, as at 169.254.169.254) here.
    #[arg(long)]
    imds_listen: Option<SocketAddr>,
    /// VAULT/NAME=VALUE secret to create at start (repeatable).
    #[arg(long = "seed", value_name = "VAULT/NAME=VALUE")]
    seeds: Vec<String>,
    /// Extra SAN for the serving certificate: DNS name, wildcard or IP (repeatable).
    #[arg(long = "extra-name")]
    extra_names: Vec<String>,
    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    token_lifetime: u64,
}

fn split_pair(s: &str, flag: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("--{flag} expects KEY=VALUE"))
}

fn config(args: &Args) -> Result<EmulatorConfig, String> {
    let mut c = EmulatorConfig {
        listen: args.listen,
        default_vault: args.default_vault.clone(),
        tenant_id: args.tenant.clone(),
        authority_host: args.authority_host.clone(),
        extra_names: args.extra_names.clone(),
        identity_header: args.identity_header.clone(),
        imds_listen: args.imds_listen,
        token_lifetime: Duration::from_secs(args.token_lifetime),
        ..EmulatorConfig::default()
    };
    for s in &args.client_secrets {
        let (id, secret) = split_pair(s, "client-secret")?;
        c.client_secrets.insert(id, secret);
    }
    for path in &args.federated_keys {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("--federated-key {}: {e}", path.display()))?;
        c.federated_keys.push(pem);
    }
    for s in &args.federated_subjects {
        let (id, subject) = split_pair(s, "federated-subject")?;
        c.federated_subjects.entry(id).or_default().push(subject);
    }
    for s in &args.seeds {
        let (path, value) = split_pair(s, "seed")?;
        let (vault, name) = path
            .split_once('/')
            .ok_or_else(|| "--seed expects VAULT/NAME=VALUE".to_owned())?;
        c.seeds.push((vault.to_owned(), name.to_owned(), value));
    }
    Ok(c)
}

async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let cfg = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kv-emulator: {e}");
            return ExitCode::from(2);
        }
    };
    let emu = match Emulator::start(cfg).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("kv-emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.ca_out
        && let Err(e) = emu.write_ca_pem(path)
    {
        eprintln!("kv-emulator: {e}");
        return ExitCode::FAILURE;
    }
    let mut out = std::io::stdout();
    if writeln!(out, "listening on {}", emu.url())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    wait_for_signal().await;
    emu.shutdown().await;
    ExitCode::SUCCESS
}
