//! Load generator for the admission webhook.
//!
//! Starts the real router in-process over the real TLS stack (`server::serve_tls`)
//! with one extra route, `POST /fixed`, that reads the body and answers a
//! precomputed copy of the real answer: the two routes differ only by the work
//! of `/mutate`. Keep-alive HTTPS connections then send requests back to back,
//! first to `/mutate`, then to `/fixed`, and the latencies are compared.
//! Also measures the real `webhook` binary's RSS: idle, and its peak after
//! 4 MiB reviews.

use std::{
    collections::BTreeMap,
    io::Read,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use axum::{Router, body::Bytes, http::header, routing::post};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode, client::conn::http1::SendRequest};
use hyper_util::rt::TokioIo;
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use secret_injector_webhook::{
    InjectorConfig,
    admission::{self, Outcome},
    server::{self, AppState},
    tls,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const SEED_POD: &[u8] = include_bytes!("../../../webhook/tests/data/review-seed-pod.json");

/// No single request may take longer than this; a stuck one counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

const SERVER_THREAD: &str = "load-server";
const CLIENT_THREAD: &str = "load-client";
const SHARED_THREAD: &str = "load-shared";

#[derive(Debug, Parser)]
#[command(
    name = "webhook-load",
    about = "Throughput and latency of /mutate against a fixed-answer route on the same stack"
)]
struct Args {
    /// Keep-alive HTTPS connections, each sending requests back to back.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    connections: u16,
    /// Measured seconds per route.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    duration: u64,
    /// Unmeasured seconds per route before the measurement.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=60))]
    warmup: u64,
    /// The webhook binary whose RSS is measured (default: `webhook` next to this program).
    #[arg(long)]
    webhook_bin: Option<PathBuf>,
    /// Give the server its own runtime with this many worker threads (0: client and
    /// server share one runtime). Either way they share this machine's cores.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=64))]
    server_threads: u16,
    /// Worker threads of the client runtime (of the shared one with --server-threads 0);
    /// default: the number of CPUs.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    client_threads: Option<u16>,
    /// Answers the in-process server keeps for identical pods (0: every
    /// request is decided, the cost of a pod never seen before).
    #[arg(long, default_value_t = server::DEFAULT_ANSWERS)]
    answer_cache_entries: usize,
    /// Do not measure the binary's RSS.
    #[arg(long)]
    skip_rss: bool,
}

// glibc malloc was 18% of the server's CPU under load (perf); mimalloc is the
// allocator the webhook binary ships with, so the load generator uses it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .map_err(|_| anyhow!("a rustls crypto provider is already installed"))?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let client_threads = args.client_threads.map_or(cpus, usize::from);
    let split = args.server_threads > 0;

    println!("webhook-load: client and server run in this one process, on 127.0.0.1,");
    println!(
        "sharing this machine's {cpus} CPU(s): the client's own TLS and HTTP work competes with the server,"
    );
    println!("so these figures understate what the server alone would do.");
    if split {
        println!(
            "runtimes: server {} worker thread(s), client {client_threads} (separate runtimes)",
            args.server_threads
        );
    } else {
        println!("runtimes: one shared runtime with {client_threads} worker thread(s)");
    }
    println!(
        "{} keep-alive connections, {} s warm-up + {} s measured per route; routes run one after the other",
        args.connections, args.warmup, args.duration
    );
    println!(
        "answer cache: {} entries{}",
        args.answer_cache_entries,
        if args.answer_cache_entries == 0 {
            " (off: every /mutate is decided)"
        } else {
            " (the same pod each time: /mutate answers from it after the first)"
        }
    );
    println!();

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads)
        .thread_name(if split { CLIENT_THREAD } else { SHARED_THREAD })
        .enable_all()
        .build()?;
    let rss = if args.skip_rss {
        None
    } else {
        let bin = match &args.webhook_bin {
            Some(bin) => bin.clone(),
            None => std::env::current_exe()
                .context("finding this program's path")?
                .with_file_name("webhook"),
        };
        Some(binary_rss(&bin, &client_rt)?)
    };
    let server_rt = if split {
        Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(usize::from(args.server_threads))
                .thread_name(SERVER_THREAD)
                .enable_all()
                .build()?,
        )
    } else {
        None
    };
    let server_handle = server_rt
        .as_ref()
        .map_or_else(|| client_rt.handle().clone(), |rt| rt.handle().clone());

    let config = InjectorConfig::default();
    let answer = Bytes::from(precompute(&config)?);
    let generated = tls::self_signed(&["127.0.0.1".to_owned()])?;
    let ca = CertificateDer::from_pem_slice(generated.ca_pem.as_bytes())
        .map_err(|e| anyhow!("reading the generated CA: {e}"))?;
    let tls_config = tls::server_config(tls::CertResolver::new(generated.key))?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;

    let fixed = answer.clone();
    let mut state = AppState::new(config);
    state.answers = Arc::new(admission::Answers::new(args.answer_cache_entries));
    let app = server::router(state).merge(Router::new().route(
        "/fixed",
        post(move |body: Bytes| {
            let fixed = fixed.clone();
            async move {
                std::hint::black_box(body);
                ([(header::CONTENT_TYPE, "application/json")], fixed)
            }
        }),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_task = server_handle.spawn(server::serve_tls(
        app,
        listener,
        tls_config,
        async {
            let _ = stopped.await;
        },
        server::Serving {
            grace: Duration::from_secs(2),
            ..Default::default()
        },
    ));

    let mut roots = RootCertStore::empty();
    roots.add(ca)?;
    let client_config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let load = Load {
        addr,
        connector: TlsConnector::from(Arc::new(client_config)),
        body: Bytes::from_static(SEED_POD),
        expected: answer,
        connections: usize::from(args.connections),
        warmup: Duration::from_secs(args.warmup),
        duration: Duration::from_secs(args.duration),
    };
    let results = client_rt.block_on(async {
        let mutate = load.run("/mutate").await?;
        let fixed = load.run("/fixed").await?;
        anyhow::Ok([mutate, fixed])
    });
    let _ = stop.send(());
    let served = server_handle
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), server_task).await });
    let results = results?;
    match served {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => bail!("the server failed: {e}"),
        Ok(Err(e)) => bail!("the server task failed: {e}"),
        Err(_) => bail!("the server did not stop within 5 s"),
    }

    report(&results, split);
    if let Some(rss) = rss {
        println!(
            "idle RSS: {:.1} MiB (goal <= 20 MB)",
            (rss.idle_kib as f64) / 1024.0
        );
        println!(
            "peak RSS after 4 MiB reviews: {:.1} MiB (goal <= 64 MiB)",
            (rss.peak_kib as f64) / 1024.0
        );
        for line in &rss.sent {
            println!("  sent {line}");
        }
    }
    Ok(())
}

/// The real answer to the seed pod, which `/fixed` returns and `/mutate` must return.
fn precompute(config: &InjectorConfig) -> anyhow::Result<Vec<u8>> {
    let reviewed = admission::review(SEED_POD, config)?;
    if reviewed.outcome != Outcome::Injected {
        bail!(
            "the seed pod was {}, not injected",
            reviewed.outcome.label()
        );
    }
    let answer = admission::encode(reviewed.review)?;
    let value: serde_json::Value = serde_json::from_slice(&answer)?;
    if value.pointer("/response/allowed") != Some(&serde_json::Value::Bool(true))
        || value.pointer("/response/patch").is_none()
    {
        bail!("the seed pod's answer is not an allowed patch");
    }
    Ok(answer)
}

struct Load {
    addr: SocketAddr,
    connector: TlsConnector,
    body: Bytes,
    expected: Bytes,
    connections: usize,
    warmup: Duration,
    duration: Duration,
}

struct Worker {
    /// Microseconds, of the requests started in the measured window.
    latencies: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

struct RouteResult {
    route: &'static str,
    latencies: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    duration: Duration,
    /// CPU time of the process's threads during the measured window, by thread group.
    cpu: BTreeMap<&'static str, Duration>,
}

type Sender = SendRequest<Full<Bytes>>;

impl Load {
    async fn connect(&self) -> anyhow::Result<Sender> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let stream = self
            .connector
            .connect(ServerName::try_from("127.0.0.1")?, tcp)
            .await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn run(&self, route: &'static str) -> anyhow::Result<RouteResult> {
        let mut senders = Vec::with_capacity(self.connections);
        for _ in 0..self.connections {
            senders.push(
                self.connect()
                    .await
                    .with_context(|| format!("connecting to {}", self.addr))?,
            );
        }
        let start = Instant::now();
        let measure_from = start + self.warmup;
        let until = measure_from + self.duration;
        let mut tasks = Vec::with_capacity(senders.len());
        for sender in senders {
            tasks.push(tokio::spawn(worker(
                sender,
                route,
                self.body.clone(),
                self.expected.clone(),
                measure_from,
                until,
            )));
        }
        tokio::time::sleep_until(measure_from.into()).await;
        let cpu_before = cpu_by_group();
        tokio::time::sleep_until(until.into()).await;
        let cpu_after = cpu_by_group();
        let mut result = RouteResult {
            route,
            latencies: Vec::new(),
            errors: 0,
            first_error: None,
            duration: self.duration,
            cpu: cpu_after
                .iter()
                .map(|(group, after)| {
                    let before = cpu_before.get(group).copied().unwrap_or_default();
                    (*group, after.saturating_sub(before))
                })
                .collect(),
        };
        for task in tasks {
            let worker = task.await?;
            result.latencies.extend(worker.latencies);
            result.errors += worker.errors;
            if result.first_error.is_none() {
                result.first_error = worker.first_error;
            }
        }
        result.latencies.sort_unstable();
        Ok(result)
    }
}

async fn worker(
    mut sender: Sender,
    route: &'static str,
    body: Bytes,
    expected: Bytes,
    measure_from: Instant,
    until: Instant,
) -> Worker {
    let mut worker = Worker {
        latencies: Vec::with_capacity(64 * 1024),
        errors: 0,
        first_error: None,
    };
    loop {
        let started = Instant::now();
        if started >= until {
            break;
        }
        let outcome =
            match tokio::time::timeout(REQUEST_TIMEOUT, call(&mut sender, route, &body, &expected))
                .await
            {
                Ok(outcome) => outcome,
                Err(_) => Err(anyhow!("no answer within {REQUEST_TIMEOUT:?}")),
            };
        let elapsed = started.elapsed();
        if started >= measure_from {
            worker
                .latencies
                .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
            if outcome.is_err() {
                worker.errors += 1;
            }
        }
        if let Err(e) = outcome {
            if worker.first_error.is_none() {
                worker.first_error = Some(format!("{route}: {e:#}"));
            }
            if sender.is_closed() {
                // The connection is gone: end this connection's loop rather than
                // reconnect in a tight loop against a broken server.
                break;
            }
        }
    }
    worker
}

/// One request; anything but 200 with the expected answer is an error.
async fn call(
    sender: &mut Sender,
    route: &str,
    body: &Bytes,
    expected: &Bytes,
) -> anyhow::Result<()> {
    sender.ready().await?;
    let request = Request::post(route)
        .header(header::HOST, "127.0.0.1")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body.clone()))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let answer = response.into_body().collect().await?.to_bytes();
    if status != StatusCode::OK {
        bail!(
            "status {status}: {}",
            String::from_utf8_lossy(&answer).trim()
        );
    }
    if answer != *expected {
        bail!("unexpected answer ({} bytes)", answer.len());
    }
    Ok(())
}

/// CPU time of this process's threads so far, grouped by thread name
/// (from /proc/self/task/*/schedstat, nanoseconds on CPU). Empty if unreadable.
fn cpu_by_group() -> BTreeMap<&'static str, Duration> {
    let mut groups = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return groups;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let (Ok(comm), Ok(schedstat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("schedstat")),
        ) else {
            continue;
        };
        let Some(ns) = schedstat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let group = match comm.trim() {
            SERVER_THREAD => "server",
            CLIENT_THREAD => "client",
            SHARED_THREAD => "shared",
            _ => "other",
        };
        *groups.entry(group).or_insert(Duration::ZERO) += Duration::from_nanos(ns);
    }
    groups
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

fn report(results: &[RouteResult; 2], split: bool) {
    let throughput =
        |r: &RouteResult| r.latencies.len() as f64 / r.duration.as_secs_f64().max(f64::EPSILON);
    println!(
        "{:<8} {:>9} {:>7} {:>9} {:>8} {:>8} {:>8} {:>10} {:>11}",
        "route",
        "requests",
        "errors",
        "req/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "CPU cores",
        "CPU us/req"
    );
    for r in results {
        let requests = r.latencies.len();
        let total_cpu: Duration = r.cpu.values().sum();
        let per_request = |d: Duration| d.as_secs_f64() * 1e6 / (requests.max(1) as f64);
        let cpu_per_request = if split {
            format!(
                "{:.0} (server {:.0}, client {:.0})",
                per_request(total_cpu),
                per_request(r.cpu.get("server").copied().unwrap_or_default()),
                per_request(r.cpu.get("client").copied().unwrap_or_default()),
            )
        } else {
            format!("{:.0}", per_request(total_cpu))
        };
        println!(
            "{:<8} {:>9} {:>7} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>10.2} {:>11}",
            r.route,
            requests,
            r.errors,
            throughput(r),
            percentile(&r.latencies, 0.50),
            percentile(&r.latencies, 0.99),
            percentile(&r.latencies, 1.0),
            total_cpu.as_secs_f64() / r.duration.as_secs_f64(),
            cpu_per_request,
        );
    }
    for r in results {
        if let Some(e) = &r.first_error {
            println!("first error: {e}");
        }
    }
    let [mutate, fixed] = results;
    println!(
        "ratio mutate/fixed throughput: {:.2}, p99: {:.2}",
        throughput(mutate) / throughput(fixed).max(f64::EPSILON),
        percentile(&mutate.latencies, 0.99) / percentile(&fixed.latencies, 0.99)
    );
    println!("goal: throughput ratio >= 0.8, p99 ratio <= 1.25");
}

/// What the real binary holds: idle, and at its peak after 4 MiB reviews.
struct BinaryRss {
    idle_kib: u64,
    peak_kib: u64,
    /// The reviews sent for the peak: what, and how each was answered.
    sent: Vec<String>,
}

/// Stops the child when dropped, whatever went wrong.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A value from /proc/PID/status, in KiB.
fn status_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| anyhow!("no {key} in /proc/{pid}/status"))
}

/// Starts the real binary on a free loopback port, waits 1 s and reads its
/// VmRSS (idle); then sends it 4 MiB reviews one after the other and reads
/// its VmHWM (the peak resident set since it started); stops it.
fn binary_rss(bin: &Path, rt: &tokio::runtime::Runtime) -> anyhow::Result<BinaryRss> {
    let dir = tempfile::tempdir()?;
    let ca_path = dir.path().join("ca.crt");
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut child = Child(
        Command::new(bin)
            .args(["serve", "--self-signed", "--native-sidecar", "never"])
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--self-signed-ca-out")
            .arg(&ca_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (build it with `cargo build --release -p secret-injector-webhook`, or pass --webhook-bin)",
                    bin.display()
                )
            })?,
    );
    std::thread::sleep(Duration::from_secs(1));
    if let Some(status) = child.0.try_wait()? {
        let mut stderr = String::new();
        if let Some(mut pipe) = child.0.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        bail!(
            "{} exited early ({status}): {}",
            bin.display(),
            stderr.trim()
        );
    }
    let pid = child.0.id();
    let idle_kib = status_kib(pid, "VmRSS:")?;

    let pem = std::fs::read(&ca_path).with_context(|| format!("reading {}", ca_path.display()))?;
    let mut roots = RootCertStore::empty();
    roots.add(
        CertificateDer::from_pem_slice(&pem)
            .map_err(|e| anyhow!("reading the binary's CA: {e}"))?,
    )?;
    let connector = TlsConnector::from(Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ));
    let load = Load {
        addr,
        connector,
        body: Bytes::new(),
        expected: Bytes::new(),
        connections: 1,
        warmup: Duration::ZERO,
        duration: Duration::ZERO,
    };
    let sent = rt.block_on(async {
        let mut sent = Vec::new();
        for (what, route, body) in four_mib_reviews() {
            let size = body.len();
            let mut sender = load.connect().await?;
            sender.ready().await?;
            let request = Request::post(route)
                .header(header::HOST, "127.0.0.1")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))?;
            let response = tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(request))
                .await
                .map_err(|_| anyhow!("{what}: no answer within {REQUEST_TIMEOUT:?}"))??;
            let status = response.status();
            let answer = response.into_body().collect().await?.to_bytes();
            if status != StatusCode::OK {
                bail!(
                    "{what}: status {status}: {}",
                    String::from_utf8_lossy(&answer).trim()
                );
            }
            let value: serde_json::Value = serde_json::from_slice(&answer)?;
            let allowed =
                value.pointer("/response/allowed") == Some(&serde_json::Value::Bool(true));
            let patched = value.pointer("/response/patch").is_some();
            sent.push(format!(
                "{what} ({:.2} MiB) on {route}: {}",
                size as f64 / 1048576.0,
                match (allowed, patched) {
                    (true, true) => "injected",
                    (true, false) => "allowed",
                    _ => "denied",
                }
            ));
        }
        anyhow::Ok(sent)
    })?;
    let peak_kib = status_kib(pid, "VmHWM:")?;
    Ok(BinaryRss {
        idle_kib,
        peak_kib,
        sent,
    })
}

/// Reviews just under the 4 MiB body limit, in the shapes that cost most.
fn four_mib_reviews() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    const SIZE: usize = server::MAX_BODY_BYTES - 1024;
    let review_of = |object: &str| {
        let mut body = String::with_capacity(SIZE + 1024);
        body.push_str(r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"default","operation":"CREATE","userInfo":{"username":"u"},"object":"#);
        body.push_str(object);
        body.push_str("}}");
        body.into_bytes()
    };
    let filled = |head: &str, item: &str, sep: &str, tail: &str| {
        let mut text = String::with_capacity(SIZE);
        text.push_str(head);
        let mut first = true;
        while text.len() + item.len() + sep.len() + tail.len() + 400 < SIZE {
            if !first {
                text.push_str(sep);
            }
            first = false;
            text.push_str(item);
        }
        text.push_str(tail);
        text
    };
    let zeros = review_of(&filled(r#"{"x":["#, "0", ",", "]}"));
    let annotation = review_of(&filled(
        r#"{"metadata":{"name":"p","annotations":{"secret-injector.io/inject":"true","secret-injector.io/secret-a":"azure://kv-test-01/secrets/a","secret-injector.io/client-id":"00000000-0000-0000-0000-000000000001","big":""#,
        "abcdefgh",
        "",
        r#""}},"spec":{"containers":[{"name":"app","image":"nginx"}]}}"#,
    ));
    vec![
        ("{\"x\":[0,0,...]}", "/mutate", zeros.clone()),
        ("{\"x\":[0,0,...]}", "/mutate-csi", zeros),
        (
            "an opted-in pod with a 4 MiB annotation",
            "/mutate",
            annotation,
        ),
    ]
}
