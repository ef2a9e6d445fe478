//! An in-process (or stand-alone) emulator of Azure Key Vault's data plane and
//! Entra ID's token endpoints, served over HTTPS on loopback, faithful enough
//! that Microsoft's own SDKs (Python `azure-identity` + `azure-keyvault-*`,
//! Rust `azure_security_keyvault_*`) talk to it unmodified.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kv_emulator::Error> {
//! use kv_emulator::{Emulator, EmulatorConfig};
//! let mut config = EmulatorConfig::default();
//! config.client_secrets.insert("my-client".into(), "my-secret".into());
//! let emu = Emulator::start(config).await?;
//! let version = emu.state().set_secret(emu.default_vault(), "db-password", "s3cr3t")?;
//! println!("{} serves db-password/{version}; trust {}", emu.url(), emu.ca_pem());
//! emu.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! See the crate's README.md for the HTTP surface (data plane, Entra, admin).

mod admin;
mod config;
mod entra;
mod error;
mod http;
mod material;
mod state;
mod tls;
mod vault;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use config::{
    DEFAULT_TENANT, DEFAULT_VAULT, EmulatorConfig, FEDERATION_AUDIENCE, SYSTEM_ASSIGNED,
};
pub use error::{Error, Result};
pub use material::{CertificateSpec, ContentType, KeyKind};
pub use state::{
    CreatedCertificate, CreatedKey, Fault, FaultTarget, ObjectKind, RequestCount, SecretSpec, State,
};

/// Entry point: `Emulator::start(config)`.
#[derive(Debug)]
pub struct Emulator;

/// A running emulator. Dropping it stops the server (without waiting);
/// [`RunningEmulator::shutdown`] stops it and waits.
pub struct RunningEmulator {
    addr: SocketAddr,
    ca_pem: String,
    state: State,
    handle: axum_server::Handle<SocketAddr>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    imds_addr: Option<SocketAddr>,
    imds: Option<(
        axum_server::Handle<SocketAddr>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    )>,
}

impl Emulator {
    /// Generates a test CA and a serving certificate (SANs: IP 127.0.0.1,
    /// `localhost`, the listen IP and `config.extra_names`), binds
    /// `config.listen` (default `127.0.0.1:0`) and serves HTTPS (HTTP/1.1) on
    /// the current tokio runtime. The socket is listening when this returns.
    pub async fn start(config: EmulatorConfig) -> Result<RunningEmulator> {
        let listener = std::net::TcpListener::bind(config.listen)
            .map_err(|e| Error::Io(format!("bind {}", config.listen), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::Io("set_nonblocking".into(), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Io("local_addr".into(), e))?;

        let pki = tls::TestPki::generate(addr.ip(), &config.extra_names)?;
        let url = format!("https://{addr}");
        let state = State::new(&config, url.clone())?;
        for (vault, name, value) in &config.seeds {
            state.set_secret(vault, name, value)?;
        }

        let app = http::router(state.clone());
        let rustls =
            axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(pki.server_config()?));
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, rustls)
            .map_err(|e| Error::Io("serve".into(), e))?
            .http1_only()
            .handle(handle.clone());
        let task = tokio::spawn(async move {
            server
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await
        });
        tracing::info!(%url, "kv-emulator listening");
        let (imds_addr, imds) = match config.imds_listen {
            Some(imds) => {
                let listener = std::net::TcpListener::bind(imds)
                    .map_err(|e| Error::Io(format!("bind {imds}"), e))?;
                listener
                    .set_nonblocking(true)
                    .map_err(|e| Error::Io("set_nonblocking".into(), e))?;
                let imds_addr = listener
                    .local_addr()
                    .map_err(|e| Error::Io("local_addr".into(), e))?;
                let server =
                    axum_server::from_tcp(listener).map_err(|e| Error::Io("serve".into(), e))?;
                let imds_handle = axum_server::Handle::new();
                let server = server.handle(imds_handle.clone());
                let app = http::router(state.clone());
                let task = tokio::spawn(async move {
                    server
                        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                        .await
                });
                tracing::info!(addr = %imds_addr, "IMDS token endpoint listening (plain HTTP)");
                (Some(imds_addr), Some((imds_handle, task)))
            }
            None => (None, None),
        };
        Ok(RunningEmulator {
            addr,
            ca_pem: pki.ca_pem,
            state,
            handle,
            task: Some(task),
            imds_addr,
            imds,
        })
    }
}

impl RunningEmulator {
    /// The bound socket address (always an IP; port resolved when 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://<ip>:<port>`: vault URL of the default vault, Entra authority
    /// host, and (with `/msi/token`) the managed-identity endpoint.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Where the IMDS token endpoint listens (plain HTTP), if asked for.
    pub fn imds_addr(&self) -> Option<SocketAddr> {
        self.imds_addr
    }

    /// PEM of the test CA that signed the serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Writes [`Self::ca_pem`] to `path`.
    pub fn write_ca_pem(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, &self.ca_pem)
            .map_err(|e| Error::Io(format!("write {}", path.display()), e))
    }

    /// Handle for admin operations (same effect as the `/admin` HTTP API).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The vault served for IP / `localhost` hosts.
    pub fn default_vault(&self) -> &str {
        self.state.default_vault()
    }

    /// The tenant the token endpoints accept and the challenge names.
    pub fn tenant_id(&self) -> &str {
        self.state.tenant_id()
    }

    /// Stops accepting, closes connections (1 s grace) and waits for the server task.
    pub async fn shutdown(mut self) {
        self.handle.graceful_shutdown(Some(Duration::from_secs(1)));
        if let Some((handle, task)) = self.imds.take() {
            handle.graceful_shutdown(Some(Duration::from_secs(1)));
            let _ = task.await;
        }
        if let Some(task) = self.task.take() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "kv-emulator server ended with an error"),
                Err(e) => tracing::warn!(error = %e, "kv-emulator server task failed"),
            }
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.handle.shutdown();
        }
        if let Some((handle, _)) = &self.imds {
            handle.shutdown();
        }
    }
}

impl std::fmt::Debug for RunningEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningEmulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
