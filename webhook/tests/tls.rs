//! The server over real TLS on loopback: it answers reviews, serves a new
//! certificate after the files change, and drains in-flight requests on shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use http_body_util::{BodyExt, Full};
use hyper::{Request, body::Bytes};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, ServerName},
};
use secret_injector_webhook::{InjectorConfig, server, tls};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
}

fn ca() -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        issuer: Issuer::new(params, key),
        der: cert.der().clone(),
    }
}

/// Writes a fresh leaf for 127.0.0.1 into `dir`; returns its DER.
fn write_leaf(ca: &Ca, dir: &Path) -> CertificateDer<'static> {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca.issuer)
        .unwrap();
    // Key first, then certificate, as a careless rotation might: the server
    // must ride out the moment where they do not match.
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    cert.der().clone()
}

fn client(ca: &Ca) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// Connects, returns the certificate the server presented and a request sender.
async fn connect(
    connector: &TlsConnector,
    addr: SocketAddr,
) -> (
    CertificateDer<'static>,
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let presented = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    (presented, sender)
}

fn install_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

async fn start(
    app: Router,
    resolver: Arc<tls::CertResolver>,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let config = tls::server_config(resolver).unwrap();
    start_with(app, config, Duration::from_secs(10)).await
}

async fn start_with(
    app: Router,
    config: Arc<rustls::ServerConfig>,
    header_read_timeout: Duration,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server::serve_tls(
            app,
            listener,
            config,
            async {
                let _ = stopped.await;
            },
            server::Serving {
                grace: Duration::from_secs(5),
                header_read_timeout,
            },
        )
        .await
        .unwrap();
    });
    (addr, stop, task)
}

/// A TLS stream to the server, with no HTTP on it yet.
async fn raw_tls(
    connector: &TlsConnector,
    addr: SocketAddr,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap()
}

/// Reads until the server closes (or `limit` passes); returns what it sent.
async fn read_until_closed(
    stream: &mut tokio_rustls::client::TlsStream<TcpStream>,
    limit: Duration,
) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "still open after {limit:?}");
    got
}

fn health_app() -> Router {
    server::router(server::AppState::new(InjectorConfig::default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_reviews_and_picks_up_a_rotated_certificate() {
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let first = write_leaf(&ca, dir.path());
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let resolver = tls::CertResolver::new(tls::load_files(&cert, &key).unwrap());
    let _watcher = tls::watch(resolver.clone(), cert, key).unwrap();
    let state = server::AppState::new(InjectorConfig::default());
    let (addr, _stop, _task) = start(server::router(state), resolver).await;
    let connector = client(&ca);

    let (presented, mut sender) = connect(&connector, addr).await;
    assert_eq!(presented, first);
    let review = include_str!("data/review-seed-pod.json");
    let response = sender
        .send_request(
            Request::post("/mutate")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(review.as_bytes())))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("\"patchType\":\"JSONPatch\""));

    // Rotate the files; new connections must get the new certificate.
    let second = write_leaf(&ca, dir.path());
    assert_ne!(first, second);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (presented, _) = connect(&connector, addr).await;
        if presented == second {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still serving the old certificate after 10s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish() {
    install_provider();
    let generated = tls::self_signed(&["127.0.0.1".to_owned()]).unwrap();
    let ca_der = CertificateDer::from_pem_slice(generated.ca_pem.as_bytes()).unwrap();
    let app = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            "done"
        }),
    );
    let (addr, stop, task) = start(app, tls::CertResolver::new(generated.key)).await;
    let mut roots = RootCertStore::empty();
    roots.add(ca_der).unwrap();
    let connector = TlsConnector::from(Arc::new(
        ClientConfig::builder_with_provider(
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    ));
    let (_, mut sender) = connect(&connector, addr).await;
    let in_flight = tokio::spawn(async move {
        sender
            .send_request(Request::get("/slow").body(Full::new(Bytes::new())).unwrap())
            .await
            .map(|r| r.status())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    assert_eq!(in_flight.await.unwrap().unwrap(), 200);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

use rustls::pki_types::pem::PemObject;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stalled_mid_headers_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    install_provider();
    let generated = tls::self_signed(&["127.0.0.1".to_owned()]).unwrap();
    let ca = Ca::trusting(&generated.ca_pem);
    let config = tls::server_config(tls::CertResolver::new(generated.key)).unwrap();
    let (addr, _stop, _task) = start_with(health_app(), config, Duration::from_millis(300)).await;
    let mut stream = raw_tls(&client_of(&ca), addr).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
        .await
        .unwrap();
    stream.flush().await.unwrap();
    let started = Instant::now();
    let got = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    // Never answered as if the request were whole.
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_prior_knowledge_preface_is_refused() {
    use tokio::io::AsyncWriteExt;
    install_provider();
    let generated = tls::self_signed(&["127.0.0.1".to_owned()]).unwrap();
    let ca = Ca::trusting(&generated.ca_pem);
    let config = tls::server_config(tls::CertResolver::new(generated.key)).unwrap();
    let (addr, _stop, _task) = start_with(health_app(), config, Duration::from_secs(10)).await;
    let mut stream = raw_tls(&client_of(&ca), addr).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), None);
    // The preface, then an empty SETTINGS frame.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    stream.flush().await.unwrap();
    let got = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    // An HTTP/2 server would answer with its own SETTINGS frame (type 4).
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 "),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_clients_with_a_certificate_from_it_are_served() {
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let generated = tls::self_signed(&["127.0.0.1".to_owned()]).unwrap();
    let server_ca = Ca::trusting(&generated.ca_pem);
    let clients = ca();
    let ca_file = dir.path().join("client-ca.crt");
    std::fs::write(&ca_file, pem_of(&clients.der)).unwrap();
    let config =
        tls::server_config_with_client_ca(tls::CertResolver::new(generated.key), &ca_file).unwrap();
    let (addr, _stop, _task) = start_with(health_app(), config, Duration::from_secs(10)).await;

    let healthz = || {
        Request::get("/healthz")
            .header("host", "127.0.0.1")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    // Without a certificate: the handshake (or the first read after it) fails.
    let refused = async {
        let tcp = TcpStream::connect(addr).await.ok()?;
        let stream = client_of(&server_ca)
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        sender.send_request(healthz()).await.ok()
    }
    .await;
    assert!(refused.is_none(), "served without a client certificate");

    // With one the CA signed: served.
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["kube-apiserver".to_owned()])
        .unwrap()
        .signed_by(&key, &clients.issuer)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(server_ca.der.clone()).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
    .unwrap();
    let (_, mut sender) = connect(&TlsConnector::from(Arc::new(config)), addr).await;
    let response = sender.send_request(healthz()).await.unwrap();
    assert_eq!(response.status(), 200);
}

fn pem_of(der: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// A CA known by its certificate only (it signs nothing here).
struct TrustedCa {
    der: CertificateDer<'static>,
}

impl Ca {
    fn trusting(pem: &str) -> TrustedCa {
        TrustedCa {
            der: CertificateDer::from_pem_slice(pem.as_bytes()).unwrap(),
        }
    }
}

fn client_of(ca: &TrustedCa) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}
