//! Command-line interface and the two commands' entry points.

use std::{io::Read, net::SocketAddr, path::PathBuf, sync::atomic::Ordering, time::Duration};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    accounts::WatchedAccounts,
    classes::WatchedClasses,
    config::{self, InjectorArgs},
    inject, server, tls,
    tls_keeper::{KeeperConfig, TlsKeeper},
};

#[derive(Debug, Parser)]
#[command(
    name = "webhook",
    version,
    about = "secret-injector's admission webhook"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve AdmissionReviews over HTTPS on /mutate.
    Serve(Box<ServeArgs>),
    /// Inject offline: read YAML (Pods and workload templates), print it mutated.
    Inject(Box<InjectArgs>),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    #[arg(
        long,
        global = true,
        env = "SECRET_INJECTOR_LOG_FORMAT",
        value_enum,
        default_value = "plain"
    )]
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `secret_injector_webhook=debug`; RUST_LOG wins.
    #[arg(
        long,
        global = true,
        env = "SECRET_INJECTOR_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, env = "SECRET_INJECTOR_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// PEM certificate chain; reloaded when it changes.
    #[arg(
        long,
        env = "SECRET_INJECTOR_TLS_CERT_FILE",
        requires = "tls_key_file",
        required_unless_present_any = ["self_signed", "tls_managed"]
    )]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key; reloaded when it changes.
    #[arg(long, env = "SECRET_INJECTOR_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// Generate a throwaway CA and serving certificate (local runs).
    #[arg(long, conflicts_with_all = ["tls_cert_file", "tls_key_file", "tls_managed"])]
    pub self_signed: bool,
    /// Self-managed TLS: keep a CA and serving certificate in a Secret shared by
    /// all replicas, write the CA into the webhook configuration, renew them.
    #[arg(long, env = "SECRET_INJECTOR_TLS_MANAGED", conflicts_with_all = ["tls_cert_file", "tls_key_file"])]
    pub tls_managed: bool,
    /// The Secret holding the self-managed certificate.
    #[arg(
        long,
        env = "SECRET_INJECTOR_TLS_SECRET",
        default_value = "secret-injector-tls"
    )]
    pub tls_secret: String,
    /// The webhook's namespace (default: the pod's own, from its ServiceAccount).
    #[arg(long, env = "SECRET_INJECTOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// DNS names of the self-managed certificate (default: <service>.<namespace>.svc[.cluster.local]).
    #[arg(long, env = "SECRET_INJECTOR_TLS_NAMES", value_delimiter = ',')]
    pub tls_names: Vec<String>,
    /// The Service in front of the webhook, for the default certificate names.
    #[arg(
        long,
        env = "SECRET_INJECTOR_SERVICE",
        default_value = "secret-injector"
    )]
    pub service: String,
    /// The MutatingWebhookConfiguration that gets the self-managed CA bundle.
    #[arg(
        long,
        env = "SECRET_INJECTOR_WEBHOOK_CONFIGURATION",
        default_value = "secret-injector"
    )]
    pub webhook_configuration: String,
    /// How often the self-managed certificate's Secret is checked.
    #[arg(long, env = "SECRET_INJECTOR_TLS_CHECK_INTERVAL", default_value = "30s",
          value_parser = parse_grace)]
    pub tls_check_interval: Duration,
    /// Renew the self-managed serving certificate this long before it expires.
    #[arg(long, env = "SECRET_INJECTOR_TLS_RENEW_BEFORE", default_value = "720h",
          value_parser = parse_grace)]
    pub tls_renew_before: Duration,
    /// DNS names and IPs of the generated certificate.
    #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
    pub self_signed_names: Vec<String>,
    /// Write the generated CA (PEM) here, for a client or a caBundle.
    #[arg(long, requires = "self_signed")]
    pub self_signed_ca_out: Option<PathBuf>,
    /// Convert Secrets Store CSI volumes on /mutate too (by default only
    /// /mutate-csi does, for namespaces labelled secret-injector.io/csi-compat=enabled).
    #[arg(long, env = "SECRET_INJECTOR_CSI_COMPAT_EVERYWHERE")]
    pub csi_compat_everywhere: bool,
    /// After SIGTERM, keep answering this long (not ready, closing each
    /// connection after its answer) so the Service's endpoints drop this
    /// replica before it stops accepting.
    #[arg(long, env = "SECRET_INJECTOR_SHUTDOWN_DELAY", default_value = "0s",
          value_parser = parse_grace)]
    pub shutdown_delay: Duration,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[arg(long, env = "SECRET_INJECTOR_SHUTDOWN_GRACE", default_value = "10s",
          value_parser = parse_grace)]
    pub shutdown_grace: Duration,
    /// A request's headers must arrive within this, or the connection is
    /// closed (slow clients hold no connection); also how long a kept-alive
    /// connection may sit idle.
    #[arg(long, env = "SECRET_INJECTOR_HEADER_READ_TIMEOUT", default_value = "10s",
          value_parser = parse_timeout)]
    pub header_read_timeout: Duration,
    /// From the first byte of a review's body to its answer; past it the
    /// review is answered 504. Keep it a little under the webhook
    /// configuration's timeoutSeconds (5), so the apiserver hears why.
    #[arg(long, env = "SECRET_INJECTOR_REQUEST_TIMEOUT", default_value = "4s",
          value_parser = parse_timeout)]
    pub request_timeout: Duration,
    /// Reviews handled at once (body read included); one more is answered 503
    /// at once instead of queueing. /healthz, /readyz and /metrics are not counted.
    #[arg(long, env = "SECRET_INJECTOR_MAX_CONCURRENT_REVIEWS", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_reviews: u16,
    /// Require a client certificate that chains to a CA in this PEM file (read
    /// at start). The kube-apiserver presents one when its
    /// --admission-control-config-file names an AdmissionConfiguration whose
    /// MutatingAdmissionWebhook kubeconfig has a user entry for this webhook's
    /// Service (for example secret-injector.secret-injector.svc) with
    /// client-certificate and client-key.
    #[arg(long, env = "SECRET_INJECTOR_CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// Answers kept for pod CREATEs whose object, namespace, classes and
    /// ServiceAccounts are exactly those of one answered before (pods a
    /// controller creates in one burst); objects over 64 KiB are not kept. 0 keeps none.
    #[arg(long, env = "SECRET_INJECTOR_ANSWER_CACHE_ENTRIES", default_value_t = server::DEFAULT_ANSWERS)]
    pub answer_cache_entries: usize,
    #[command(flatten)]
    pub injector: InjectorArgs,
}

fn parse_grace(s: &str) -> Result<Duration, String> {
    shared::parse_duration(s)
        .ok_or_else(|| format!("{s:?} is not a duration: use 10s, 1m or 1m30s"))
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    match shared::parse_duration(s) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "{s:?} is not a timeout: use 500ms, 4s or 1m (more than 0)"
        )),
    }
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// A YAML file, or `-` for standard input.
    #[arg(short = 'f', long = "filename")]
    pub filename: String,
    /// Convert Secrets Store CSI volumes (driver secrets-store.csi.k8s.io) using
    /// the SecretProviderClasses in the same input.
    #[arg(long)]
    pub csi_compat: bool,
    #[command(flatten)]
    pub injector: InjectorArgs,
}

pub fn init_logging(log: &LogArgs) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Plain => builder.init(),
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Inject(args) => inject(*args),
    }
}

fn inject(args: InjectArgs) -> anyhow::Result<()> {
    let mut input = String::new();
    if args.filename == "-" {
        std::io::stdin()
            .read_to_string(&mut input)
            .context("reading standard input")?;
    } else {
        input = std::fs::read_to_string(&args.filename)
            .with_context(|| format!("reading {}", args.filename))?;
    }
    // Offline there is no apiserver to ask: `auto` needs --kube-version.
    let native = args
        .injector
        .native_sidecars_without_discovery()
        .unwrap_or(false);
    args.injector.check()?;
    let config = args.injector.resolve(native);
    let injected = inject::inject_stream_with(
        &input,
        &config,
        inject::InjectOptions {
            csi_compat: args.csi_compat,
        },
    )?;
    for warning in &injected.warnings {
        eprintln!("warning: {warning}");
    }
    print!("{}", injected.output);
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    args.injector.check()?;
    // In a cluster (or with a kubeconfig): the apiserver's version and the
    // SecretProviderClasses. Local runs have neither, and need neither.
    let client = match kube::Client::try_default().await {
        Ok(client) => Some(client),
        Err(e) => {
            tracing::warn!(error = %e, "no Kubernetes API: SecretProviderClasses cannot be read");
            None
        }
    };
    let native = match args.injector.native_sidecars_without_discovery() {
        Some(native) => native,
        None => discover_native_sidecars(client.clone()).await,
    };
    let config = args.injector.resolve(native);
    tracing::info!(native_sidecars = native, image = %config.image, "injection configured");

    let (resolver, _watcher) = match (&args.tls_cert_file, &args.tls_key_file, args.self_signed) {
        _ if args.tls_managed => {
            let Some(client) = client.clone() else {
                bail!("--tls-managed needs the Kubernetes API (in a pod, or a kubeconfig)");
            };
            let keeper = TlsKeeper::new(client, keeper_config(&args)?);
            (keeper.start().await?, None)
        }
        (Some(cert), Some(key), false) => {
            let resolver = tls::CertResolver::new(tls::load_files(cert, key)?);
            let watcher = tls::watch(resolver.clone(), cert.clone(), key.clone())?;
            (resolver, Some(watcher))
        }
        (None, None, true) => {
            let generated = tls::self_signed(&args.self_signed_names)?;
            if let Some(path) = &args.self_signed_ca_out {
                std::fs::write(path, &generated.ca_pem)
                    .with_context(|| format!("writing the CA to {}", path.display()))?;
            }
            (tls::CertResolver::new(generated.key), None)
        }
        _ => bail!("give --tls-cert-file with --tls-key-file, --tls-managed, or --self-signed"),
    };
    let tls_config = match &args.client_ca_file {
        Some(ca) => tls::server_config_with_client_ca(resolver, ca)?,
        None => tls::server_config(resolver)?,
    };

    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("binding {}", args.listen))?;
    let local = listener.local_addr()?;
    let mut state = server::AppState::new(config);
    state.csi_compat_everywhere = args.csi_compat_everywhere;
    state.limits = server::Limits {
        max_concurrent_reviews: usize::from(args.max_concurrent_reviews),
        request_timeout: args.request_timeout,
    };
    state.answers = std::sync::Arc::new(crate::admission::Answers::new(args.answer_cache_entries));
    if let Some(client) = client {
        // Serving starts at once; /readyz says 503, and reviews that need a
        // cache are denied as not ready, until both watches have listed.
        let classes = std::sync::Arc::new(WatchedClasses::start(client.clone()));
        let accounts = std::sync::Arc::new(WatchedAccounts::start(client));
        tokio::spawn(report_sync(classes.clone(), accounts.clone()));
        state.classes = classes;
        state.accounts = accounts;
    }
    let ready = state.ready.clone();
    let draining = state.draining.clone();
    let delay = args.shutdown_delay;
    let not_ready = ready.clone();
    let shutdown = async move {
        shutdown_signal().await;
        not_ready.store(false, Ordering::Release);
        draining.store(true, Ordering::Release);
        if !delay.is_zero() {
            tracing::info!(
                delay_seconds = delay.as_secs(),
                "not ready; answering until the endpoints drop this replica"
            );
            tokio::time::sleep(delay).await;
        }
    };
    let app = server::router(state);
    tracing::info!(address = %local, "serving /mutate over HTTPS");
    ready.store(true, Ordering::Release);
    let serving = server::Serving {
        grace: args.shutdown_grace,
        header_read_timeout: args.header_read_timeout,
    };
    server::serve_tls(app, listener, tls_config, shutdown, serving).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Logs when both caches have listed, and every 30 s what is still missing.
async fn report_sync(
    classes: std::sync::Arc<WatchedClasses>,
    accounts: std::sync::Arc<WatchedAccounts>,
) {
    let started = std::time::Instant::now();
    loop {
        let listed = tokio::join!(
            classes.wait_until_ready(Duration::from_secs(30)),
            accounts.wait_until_ready(Duration::from_secs(30)),
        );
        if listed == (true, true) {
            tracing::info!(
                after_seconds = started.elapsed().as_secs(),
                "SecretProviderClasses and ServiceAccounts listed: ready"
            );
            return;
        }
        if !listed.0 {
            tracing::warn!(
                "SecretProviderClasses not listed yet (is the CRD installed?); not ready, the watch retries"
            );
        }
        if !listed.1 {
            tracing::warn!("ServiceAccounts not listed yet; not ready, the watch retries");
        }
    }
}

fn keeper_config(args: &ServeArgs) -> anyhow::Result<KeeperConfig> {
    const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
    let namespace = match &args.namespace {
        Some(namespace) => namespace.clone(),
        None => std::fs::read_to_string(NAMESPACE_FILE)
            .map(|s| s.trim().to_owned())
            .with_context(|| {
                format!("--tls-managed: give --namespace (cannot read {NAMESPACE_FILE})")
            })?,
    };
    let names = if args.tls_names.is_empty() {
        let service = &args.service;
        vec![
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
            format!("{service}.{namespace}"),
            service.clone(),
        ]
    } else {
        args.tls_names.clone()
    };
    Ok(KeeperConfig {
        namespace,
        secret_name: args.tls_secret.clone(),
        webhook_configuration: Some(args.webhook_configuration.clone()).filter(|n| !n.is_empty()),
        names,
        lifetimes: crate::managed_tls::Lifetimes {
            renew_before: args.tls_renew_before,
            ..Default::default()
        },
        check_every: args.tls_check_interval,
    })
}

/// Asks the apiserver its version; without one (local runs) or on error,
/// classic sidecars, which work everywhere.
async fn discover_native_sidecars(client: Option<kube::Client>) -> bool {
    let Some(client) = client else { return false };
    let attempt = async { client.apiserver_version().await };
    match tokio::time::timeout(Duration::from_secs(10), attempt).await {
        Ok(Ok(info)) => {
            let native = config::parse_kube_version(&info.major, &info.minor)
                .is_some_and(config::supports_native_sidecars);
            tracing::info!(version = %info.git_version, native_sidecars = native, "asked the apiserver");
            native
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot ask the apiserver its version; using classic sidecars (set --native-sidecar or --kube-version)");
            false
        }
        Err(_) => {
            tracing::warn!(
                "the apiserver did not answer in 10s; using classic sidecars (set --native-sidecar or --kube-version)"
            );
            false
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits at once.
async fn shutdown_signal() {
    wait_for_signal().await;
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!("second signal: exiting without draining");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
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
