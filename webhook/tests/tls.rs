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
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = tls::server_config(resolver).unwrap();
    let task = tokio::spawn(async move {
        server::serve_tls(
            app,
            listener,
            config,
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    });
    (addr, stop, task)
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
