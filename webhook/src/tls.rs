//! The serving certificate: read from files and swapped in when they change
//! (mounted Secrets rotate by a `..data` symlink swap), or generated for local
//! runs. Each new TLS handshake asks the resolver, so a reload needs no restart.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1 are accepted)")]
    BadKey { path: PathBuf },
    #[error("the key in {key} does not match the certificate in {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("no rustls crypto provider is installed")]
    NoProvider,
    #[error("cannot watch {path} for certificate changes: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("{path} holds no usable CA certificate for client certificates: {reason}")]
    ClientCa { path: PathBuf, reason: String },
}

/// Hands out the current certificate to each handshake.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    pub fn new(key: CertifiedKey) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(key),
        })
    }

    pub fn replace(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn provider() -> Result<Arc<CryptoProvider>, TlsError> {
    CryptoProvider::get_default()
        .cloned()
        .ok_or(TlsError::NoProvider)
}

/// A server config that serves whatever the resolver holds, HTTP/1.1 only
/// (the apiserver calls webhooks over HTTP/1.1 or HTTP/2; 1.1 keeps it simple).
pub fn server_config(resolver: Arc<CertResolver>) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider()?)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth();
    Ok(http1(builder.with_cert_resolver(resolver)))
}

/// [`server_config`], and a client must present a certificate that chains
/// to a CA certificate in `ca_file` (PEM, read once): the handshake fails
/// without one.
pub fn server_config_with_client_ca(
    resolver: Arc<CertResolver>,
    ca_file: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let bad = |reason: String| TlsError::ClientCa {
        path: ca_file.to_owned(),
        reason,
    };
    let pem = std::fs::read(ca_file).map_err(|source| TlsError::Read {
        path: ca_file.to_owned(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("not PEM ({e})")))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no PEM certificate".to_owned()));
    }
    let provider = provider()?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| bad(e.to_string()))?;
    let builder = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier);
    Ok(http1(builder.with_cert_resolver(resolver)))
}

fn http1(mut config: ServerConfig) -> Arc<ServerConfig> {
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

pub fn load_files(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    certified_key(&cert_pem, &key_pem, cert_path, key_path)
}

/// A certificate chain and its key, PEM; the paths only name them in errors.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::BadKey {
        path: key_path.to_owned(),
    })?;
    CertifiedKey::from_der(chain, key, &*provider()?).map_err(|e| TlsError::Mismatch {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        reason: e.to_string(),
    })
}

/// A throwaway CA and a serving certificate it signed, for local runs.
pub struct SelfSigned {
    pub key: CertifiedKey,
    /// The CA certificate, PEM: what a client (or a caBundle) trusts.
    pub ca_pem: String,
}

pub fn self_signed(names: &[String]) -> Result<SelfSigned, TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "secret-injector local CA");
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate()?;
    let mut leaf_params = CertificateParams::new(names.to_vec())?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "secret-injector webhook");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;

    let key_der = PrivateKeyDer::try_from(leaf_key.serialize_der())
        .map_err(|e| TlsError::Config(rustls::Error::General(e.to_owned())))?;
    let key = CertifiedKey::from_der(
        vec![leaf.der().clone(), ca_cert.der().clone()],
        key_der,
        &*provider()?,
    )?;
    Ok(SelfSigned {
        key,
        ca_pem: ca_cert.pem(),
    })
}

/// Watches the directories of the certificate and key and reloads both after
/// any change settles. A pair that fails to load leaves the old one serving.
/// The returned watcher must be kept alive.
pub fn watch(
    resolver: Arc<CertResolver>,
    cert_path: PathBuf,
    key_path: PathBuf,
) -> Result<notify::RecommendedWatcher, TlsError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Our own reads raise access events; only changes matter.
        use notify::EventKind::{Create, Modify, Remove};
        if let Ok(notify::Event {
            kind: Create(_) | Modify(_) | Remove(_),
            ..
        }) = event
        {
            let _ = tx.send(());
        }
    })
    .map_err(|source| TlsError::Watch {
        path: cert_path.clone(),
        source,
    })?;
    let mut dirs: Vec<PathBuf> = [&cert_path, &key_path]
        .iter()
        .map(|p| {
            p.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_owned()
        })
        .collect();
    dirs.dedup();
    for dir in &dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|source| TlsError::Watch {
                path: dir.clone(),
                source,
            })?;
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Let a burst of events (key and cert written one after the other) settle.
            tokio::time::sleep(Duration::from_millis(200)).await;
            while rx.try_recv().is_ok() {}
            match load_files(&cert_path, &key_path) {
                Ok(key) => {
                    resolver.replace(key);
                    tracing::info!(cert = %cert_path.display(), "reloaded the TLS certificate");
                }
                Err(e) => tracing::warn!(error = %e, "kept the previous TLS certificate"),
            }
        }
    });
    Ok(watcher)
}
