//! One trait for every store, one folder per store behind it; errors a
//! person can act on, classified so the retry policy and the status file can
//! tell a missing secret from an outage, whichever store said it.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use async_trait::async_trait;
use futures::{StreamExt, future, stream};
use shared::{ObjectFormat, SecretRef, Store};

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "azure")]
pub mod azure;
pub mod chain;
#[cfg(feature = "vault")]
pub mod vault;

use crate::{lease::Lease, secret::SecretBytes, text};

/// A value as the store returned it, with the store's version id and, for
/// a value it lends (dynamic credentials, a certificate), the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub value: SecretBytes,
    pub version: String,
    pub lease: Option<Lease>,
}

impl Fetched {
    pub fn new(value: SecretBytes, version: impl Into<String>) -> Self {
        Self {
            value,
            version: version.into(),
            lease: None,
        }
    }
}

/// An error's detail as it may be shown: one line of at most
/// [`text::DETAIL_LIMIT`] bytes, however long or multi-line the store's (or
/// the HTTP layer's) text was. The only way to make one, so no unbounded body
/// reaches the status file, an Event, a log line or the termination message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detail(String);

impl Detail {
    pub fn new(text: &str) -> Self {
        Self(text::bounded(text, text::DETAIL_LIMIT))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Detail {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<String> for Detail {
    fn from(text: String) -> Self {
        Self::new(&text)
    }
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a fetch failed. Messages name the object and the store, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("401 Unauthorized: {0}")]
    Unauthorized(Detail),
    #[error("403 Forbidden: {0}")]
    Forbidden(Detail),
    #[error("404 Not Found: {0}")]
    NotFound(Detail),
    #[error("429 Too Many Requests{}: {detail}", .retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    Throttled {
        retry_after: Option<Duration>,
        detail: Detail,
    },
    #[error("store unavailable: {0}")]
    Unavailable(Detail),
    #[error("DNS: {0}")]
    Dns(Detail),
    #[error("TLS: {0}")]
    Tls(Detail),
    #[error("timeout: {0}")]
    Timeout(Detail),
    #[error("connection: {0}")]
    Connection(Detail),
    #[error("credential: {0}")]
    Credential(Detail),
    #[error("the value cannot be used: {0}")]
    Invalid(Detail),
    #[error("{0}")]
    Unsupported(Detail),
}

impl FetchError {
    /// A short, stable name: metric label and status-file field.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Throttled { .. } => "throttled",
            Self::Unavailable(_) => "unavailable",
            Self::Dns(_) => "dns",
            Self::Tls(_) => "tls",
            Self::Timeout(_) => "timeout",
            Self::Connection(_) => "connection",
            Self::Credential(_) => "credential",
            Self::Invalid(_) => "invalid",
            Self::Unsupported(_) => "unsupported",
        }
    }

    /// Retrying cannot mend it: the store does not exist in this build, the
    /// value can never be written, or a policy denies access. The init
    /// container fails at once with it rather than at its deadline. A
    /// missing secret is not permanent: it may be created any moment.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::Unsupported(_) | Self::Invalid(_) | Self::Forbidden(_)
        )
    }

    /// The store could not be reached or failed on its side (a 5xx, a
    /// timeout, no connection): what a failover source is for. An answer
    /// (not found, denied, throttled) is not an outage.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Timeout(_) | Self::Connection(_) | Self::Dns(_)
        )
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l2_a_ten_kilobyte_detail_is_one_bounded_line() {
        let body = format!("{}\n<html>{}</html>", "e".repeat(5000), "b".repeat(5000));
        let err = FetchError::Unavailable(body.into());
        let text = err.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(
            text.len() <= "store unavailable: ".len() + crate::text::DETAIL_LIMIT,
            "{}",
            text.len()
        );
        assert!(text.ends_with('…'), "{text}");
    }
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// Fetches one object. `source` is always of this provider's scheme;
    /// `format` asks for a certificate-backed secret as PEM or PFX.
    async fn fetch(
        &self,
        source: &SecretRef,
        format: Option<ObjectFormat>,
    ) -> Result<Fetched, FetchError>;

    /// Fetches many objects, answering in their order. A store that can ask
    /// for several in one call (Parameter Store's `GetParameters`) does;
    /// the rest ask one by one, at most `concurrency` at a time.
    async fn fetch_batch(
        &self,
        requests: &[Request],
        concurrency: usize,
    ) -> Vec<Result<Fetched, FetchError>> {
        fetch_each(self, requests, concurrency).await
    }

    /// Forget cached credentials (after a 401, a token may have been revoked).
    fn reset_credentials(&self) {}

    /// Extends a lease this store granted, asking for its term again.
    async fn renew(&self, lease: &Lease) -> Result<Lease, FetchError> {
        let _ = lease;
        Err(FetchError::Unsupported(
            "this store grants no renewable leases".into(),
        ))
    }

    /// The sidecar is stopping with these leases out: a store configured to
    /// end them (Vault's revoke on shutdown) does; the rest keep them.
    async fn release(&self, leases: &[Lease]) {
        let _ = leases;
    }
}

/// One object to fetch: its reference (as [`SecretRef::fetched`] asks it)
/// and, for a certificate-backed secret, the format.
pub type Request = (SecretRef, Option<ObjectFormat>);

/// [`Provider::fetch_batch`] one request at a time, `concurrency` at once.
pub async fn fetch_each<P: Provider + ?Sized>(
    provider: &P,
    requests: &[Request],
    concurrency: usize,
) -> Vec<Result<Fetched, FetchError>> {
    // Made before the stream (not by a combinator's closure, which in a
    // `Send` async-trait future trips rustc's higher-ranked lifetimes).
    let mut fetches = Vec::with_capacity(requests.len());
    for (source, format) in requests {
        fetches.push(provider.fetch(source, *format));
    }
    stream::iter(fetches)
        .buffered(concurrency.max(1))
        .collect()
        .await
}

/// What every store's client takes from the command line: extra trusted CAs,
/// fixed addresses, a per-request timeout.
#[derive(Debug, Clone, Default)]
pub struct TransportOptions {
    /// Extra trusted CAs (PEM), added to the system's: private endpoints, emulators.
    pub ca_bundle: Option<Vec<u8>>,
    /// Fixed addresses for host names, like `/etc/hosts` (private endpoints).
    pub resolve: Vec<(String, SocketAddr)>,
    pub timeout: Duration,
}

/// Dispatches by store to the providers this build has.
#[derive(Default)]
pub struct Providers(BTreeMap<Store, Box<dyn Provider>>);

impl Providers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, store: Store, provider: Box<dyn Provider>) -> Self {
        self.0.insert(store, provider);
        self
    }

    pub fn insert(&mut self, store: Store, provider: Box<dyn Provider>) {
        self.0.insert(store, provider);
    }

    pub fn for_ref(&self, source: &SecretRef) -> Result<&dyn Provider, FetchError> {
        let store = source.store();
        self.0.get(&store).map(|p| p.as_ref()).ok_or_else(|| {
            let built: Vec<&str> = compiled_stores().iter().map(|s| s.title()).collect();
            FetchError::Unsupported(
                format!(
                    "{} is not supported by this sidecar (it reads {}); use a sidecar image built with it",
                    store.title(),
                    built.join(", ")
                )
                .into(),
            )
        })
    }

    pub async fn fetch(
        &self,
        source: &SecretRef,
        format: Option<ObjectFormat>,
    ) -> Result<Fetched, FetchError> {
        let requests = [(source.clone(), format)];
        self.fetch_all(&requests, 1)
            .await
            .pop()
            .unwrap_or_else(|| Err(FetchError::Unsupported("not fetched".into())))
    }

    /// Fetches every request, answering in their order: each store's share
    /// as one batch, the stores at the same time.
    pub async fn fetch_all(
        &self,
        requests: &[Request],
        concurrency: usize,
    ) -> Vec<Result<Fetched, FetchError>> {
        let mut by_store: BTreeMap<Store, Vec<usize>> = BTreeMap::new();
        for (i, (source, _)) in requests.iter().enumerate() {
            by_store.entry(source.store()).or_default().push(i);
        }
        let batches = by_store.into_iter().map(|(store, indexes)| async move {
            let batch: Vec<Request> = indexes.iter().map(|&i| requests[i].clone()).collect();
            let results = match self.0.get(&store) {
                Some(provider) => {
                    let results = provider.fetch_batch(&batch, concurrency).await;
                    if results
                        .iter()
                        .any(|r| matches!(r, Err(FetchError::Unauthorized(_))))
                    {
                        provider.reset_credentials();
                    }
                    results
                }
                None => {
                    let refused = batch
                        .first()
                        .and_then(|(source, _)| self.for_ref(source).err())
                        .unwrap_or_else(|| FetchError::Unsupported("no provider".into()));
                    vec![Err(refused); batch.len()]
                }
            };
            indexes.into_iter().zip(results).collect::<Vec<_>>()
        });
        let mut answers: Vec<Option<Result<Fetched, FetchError>>> = vec![None; requests.len()];
        for (i, result) in future::join_all(batches).await.into_iter().flatten() {
            if let Some(slot) = answers.get_mut(i) {
                *slot = Some(result);
            }
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(FetchError::Unsupported("not fetched".into()))))
            .collect()
    }
}

impl Providers {
    pub async fn renew(&self, store: Store, lease: &Lease) -> Result<Lease, FetchError> {
        match self.0.get(&store) {
            Some(provider) => provider.renew(lease).await,
            None => Err(FetchError::Unsupported("no provider".into())),
        }
    }

    pub async fn release(&self, store: Store, leases: &[Lease]) {
        if let Some(provider) = self.0.get(&store) {
            provider.release(leases).await;
        }
    }
}

/// The stores this build has providers for (cargo features).
pub fn compiled_stores() -> &'static [Store] {
    &[
        #[cfg(feature = "azure")]
        Store::Azure,
        #[cfg(feature = "aws")]
        Store::Aws,
        #[cfg(feature = "vault")]
        Store::Vault,
    ]
}
