//! `fetch --once` (the init container), `run` (the sidecar), `probe` (the
//! native sidecar's startup probe): the same flags and the same spec.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use shared::Store;

#[cfg(feature = "azure")]
use crate::providers::azure::AzureProvider;

use crate::{
    cluster::PodIdentity,
    config::{self, EnvSource},
    engine::{Engine, EngineError},
    kube_sink::KubeSink,
    plan,
    providers::{Providers, TransportOptions},
    writer::AtomicWriter,
};

#[derive(Debug, Parser)]
#[command(
    name = "secret-injector-sidecar",
    version,
    about = "Fetches secrets into files and keeps them rotated"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch every secret once, write the set, exit (the init container).
    Fetch {
        /// Accepted for clarity: `fetch` always fetches once.
        #[arg(long, default_value_t = true)]
        once: bool,
    },
    /// Fetch if nothing is there yet, then re-poll and rotate until SIGTERM.
    Run,
    /// Exit 0 once a complete set has been written (startup probe).
    Probe,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Where the files go; defaults to the spec's mount path.
    #[arg(long, global = true, env = "SECRET_INJECTOR_DIR")]
    pub dir: Option<PathBuf>,
    /// How long the first fetch may keep retrying before giving up.
    #[arg(long, global = true, env = "SECRET_INJECTOR_DEADLINE", default_value = "2m", value_parser = duration)]
    pub deadline: Duration,
    /// Extra CA certificates (PEM) to trust besides the system's.
    #[arg(long, global = true, env = "SECRET_INJECTOR_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
    /// Fixed addresses for host names: host=ip:port (repeatable, or comma-separated in the env var).
    #[arg(
        long,
        global = true,
        env = "SECRET_INJECTOR_RESOLVE",
        value_delimiter = ','
    )]
    pub resolve: Vec<String>,
    /// Per-request timeout against the store.
    #[arg(long, global = true, env = "SECRET_INJECTOR_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub timeout: Duration,
    /// Store hosts the spec may name (the webhook sets the operator's list);
    /// nothing is sent to any other.
    #[arg(long, global = true, env = shared::contract::env::ALLOWED_STORE_HOSTS,
          default_value = shared::store_hosts::DEFAULT_ALLOWED_STORE_HOSTS)]
    pub allowed_store_hosts: shared::StoreHosts,
    /// Serve Prometheus metrics on this address (off by default).
    #[arg(long, global = true, env = "SECRET_INJECTOR_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Store requests in flight at once.
    #[arg(
        long,
        global = true,
        env = "SECRET_INJECTOR_CONCURRENCY",
        default_value_t = 4
    )]
    pub concurrency: usize,
    #[arg(
        long,
        global = true,
        env = "SECRET_INJECTOR_LOG_FORMAT",
        value_enum,
        default_value = "plain"
    )]
    pub log_format: LogFormat,
    /// A tracing filter; RUST_LOG wins.
    #[arg(
        long,
        global = true,
        env = "SECRET_INJECTOR_LOG_LEVEL",
        default_value = "info,typespec_client_core=warn,azure_core=warn,azure_identity=warn"
    )]
    pub log_level: String,
}

fn duration(s: &str) -> Result<Duration, String> {
    shared::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a duration: use 30s, 2m or 1m30s"))
}

pub fn init_logging(common: &CommonArgs) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&common.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match common.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Plain => builder.init(),
    }
}

/// The process exit code and, on failure, the one line to print.
pub async fn run(cli: Cli, env: &impl EnvSource) -> Result<(), anyhow::Error> {
    let sets = config::injection(env)?.into_sets();
    if sets.len() > 1 && cli.common.dir.is_some() {
        anyhow::bail!(
            "--dir names one directory and the spec has {} sets of files (volumes); leave --dir unset so each goes to its own mount path",
            sets.len()
        );
    }
    let dir_of = |spec: &shared::InjectionSpec| {
        cli.common
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(&spec.mount_path))
    };
    if let Command::Probe = cli.command {
        return match sets
            .iter()
            .map(dir_of)
            .find(|d| !AtomicWriter::new(d).has_data())
        {
            None => Ok(()),
            Some(dir) => Err(anyhow::anyhow!("no complete set in {} yet", dir.display())),
        };
    }

    let transport = TransportOptions {
        ca_bundle: config::ca_bundle(cli.common.ca_bundle.as_ref())?,
        resolve: config::parse_resolve(&cli.common.resolve)?,
        timeout: cli.common.timeout,
    };
    let metrics = cli.common.metrics_addr.map(|addr| {
        let metrics = crate::metrics::Metrics::new();
        let served = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(addr, served).await {
                tracing::warn!(%addr, error = %e, "cannot serve metrics");
            }
        });
        metrics
    });
    let pod = PodIdentity::from_env(|k| env.get(k));
    let in_cluster = env.get("KUBERNETES_SERVICE_HOST").is_some();
    let mut engines = Vec::with_capacity(sets.len());
    for spec in sets {
        let dir = dir_of(&spec);
        // In a pod the volume exists; in local runs it may not yet.
        std::fs::create_dir_all(&dir)?;
        // Each set its own providers: two classes may name two identities.
        let providers = providers(env, &spec, &transport, &cli.common.allowed_store_hosts).await?;
        let mut engine = Engine::new(spec, providers, AtomicWriter::new(&dir))
            .with_concurrency(cli.common.concurrency)
            .with_store_hosts(cli.common.allowed_store_hosts.clone());
        if let Some(metrics) = &metrics {
            engine = engine.with_metrics(metrics.clone());
        }
        if let Some(sink) = KubeSink::connect(engine.spec(), pod.clone(), in_cluster)? {
            engine = engine.with_publisher(Box::new(sink));
        }
        tracing::info!(dir = %dir.display(), objects = engine.spec().objects.len(), "starting");
        engines.push(engine);
    }

    // Every set stops on the one signal.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let deadline = cli.common.deadline;
    let runs = engines.into_iter().map(|engine| {
        let mut stopped = stopped.clone();
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        serve_set(engine, &cli.command, deadline, shutdown)
    });
    // The first set that fails ends the process, naming it.
    futures::future::try_join_all(runs).await?;
    if let Command::Run = cli.command {
        tracing::info!("stopped");
    }
    Ok(())
}

/// One set's part of the command: the init run, or the rotation loop.
async fn serve_set(
    mut engine: Engine,
    command: &Command,
    deadline: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), anyhow::Error> {
    match command {
        Command::Probe => Ok(()),
        Command::Fetch { .. } => {
            let report = engine.init(deadline).await.map_err(one_line)?;
            tracing::info!(wrote = report.wrote, dir = %engine.spec().mount_path, "all secrets written");
            Ok(())
        }
        Command::Run => {
            tokio::pin!(shutdown);
            let first_delay = if engine.resume()? {
                // The init container has just fetched: wait a full interval.
                engine
                    .spec()
                    .rotation
                    .interval()
                    .map(|i| plan::jittered(i, rand::random::<f64>()))
            } else {
                // A native sidecar fetches first and passes its probe after.
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    result = engine.init(deadline) => { result.map_err(one_line)?; }
                }
                engine.spec().rotation.interval()
            };
            match first_delay {
                Some(delay) => engine.run(delay, shutdown).await.map_err(one_line)?,
                None => shutdown.await,
            }
            Ok(())
        }
    }
}

fn one_line(e: EngineError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A provider for each store the spec uses that this build has; a store it
/// lacks fails its objects with a message naming it (`Providers::for_ref`).
async fn providers(
    env: &impl EnvSource,
    spec: &shared::InjectionSpec,
    transport: &TransportOptions,
    hosts: &shared::StoreHosts,
) -> Result<Providers, anyhow::Error> {
    let mut providers = Providers::new();
    for store in spec.stores().into_keys() {
        match store {
            #[cfg(feature = "azure")]
            Store::Azure => {
                let azure = crate::providers::azure::config::from_env(env, spec, transport)?;
                tracing::info!(auth = ?azure.auth, authority = %azure.authority_host, "Azure Key Vault");
                providers.insert(store, Box::new(AzureProvider::new(azure)?));
            }
            #[cfg(feature = "aws")]
            Store::Aws => {
                let region = spec.objects.iter().find_map(|o| match &o.source {
                    shared::SecretRef::Aws(r) => Some(r.region.clone()),
                    _ => None,
                });
                let aws = crate::providers::aws::AwsProvider::new(transport, region).await?;
                tracing::info!("AWS Secrets Manager and Parameter Store");
                providers.insert(store, Box::new(aws));
            }
            #[cfg(feature = "vault")]
            Store::Vault => {
                let config =
                    crate::providers::vault::config::from_env(env, spec, transport, hosts)?;
                tracing::info!(address = %config.address, auth = ?config.auth, namespace = ?config.namespace, "HashiCorp Vault / OpenBao");
                let vault = crate::providers::vault::VaultProvider::new(config).await?;
                providers.insert(store, Box::new(vault));
            }
            _ => {}
        }
    }
    Ok(providers)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The webhook runs these; they must stay this binary's commands.
    #[test]
    fn the_webhooks_arguments_are_this_binarys_commands() {
        let parse = |args: &[&str]| {
            let argv = std::iter::once("secret-injector-sidecar").chain(args.iter().copied());
            Cli::try_parse_from(argv).map(|cli| cli.command)
        };
        use shared::contract::args;
        assert!(matches!(
            parse(args::FETCH_ONCE),
            Ok(Command::Fetch { once: true })
        ));
        assert!(matches!(parse(args::RUN), Ok(Command::Run)));
        assert!(matches!(parse(args::PROBE), Ok(Command::Probe)));
    }
}
