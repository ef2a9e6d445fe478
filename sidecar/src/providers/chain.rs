//! What every store's transport failures have in common, found by walking
//! the error chain and downcasting (not by reading messages, which change
//! with every SDK release): DNS, TLS, timeouts, refused connections. The
//! resolver here is the one every store's HTTP client uses, so a failed
//! lookup is a typed error whichever SDK wraps it.

use std::{
    error::Error,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use crate::{
    providers::{Detail, FetchError},
    text,
};

/// A name that did not resolve; the only DNS failure type the chain needs.
#[derive(Debug, Clone, thiserror::Error)]
#[error("DNS lookup of {name} failed: {reason}")]
pub struct DnsFailed {
    pub name: String,
    pub reason: String,
}

/// The system resolver (getaddrinfo through tokio), with `--resolve`
/// overrides first, for reqwest (Azure) and the AWS SDK alike.
#[derive(Debug, Clone, Default)]
pub struct SystemResolver {
    overrides: Arc<Vec<(String, SocketAddr)>>,
}

impl SystemResolver {
    pub fn new(overrides: Vec<(String, SocketAddr)>) -> Self {
        Self {
            overrides: Arc::new(overrides),
        }
    }

    pub async fn lookup(&self, name: &str) -> Result<Vec<SocketAddr>, DnsFailed> {
        let fixed: Vec<SocketAddr> = self
            .overrides
            .iter()
            .filter(|(host, _)| host.eq_ignore_ascii_case(name))
            .map(|(_, addr)| *addr)
            .collect();
        if !fixed.is_empty() {
            return Ok(fixed);
        }
        let failed = |reason: String| DnsFailed {
            name: text::bounded(name, 253),
            reason,
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, 0))
            .await
            .map_err(|e| failed(e.to_string()))?
            .collect();
        if addrs.is_empty() {
            return Err(failed("no addresses".to_owned()));
        }
        Ok(addrs)
    }
}

impl reqwest::dns::Resolve for SystemResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        Box::pin(async move {
            let addrs = this.lookup(name.as_str()).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(feature = "aws")]
impl aws_smithy_runtime_api::client::dns::ResolveDns for SystemResolver {
    fn resolve_dns<'a>(
        &'a self,
        name: &'a str,
    ) -> aws_smithy_runtime_api::client::dns::DnsFuture<'a> {
        aws_smithy_runtime_api::client::dns::DnsFuture::new(async move {
            // The AWS client connects to the URL's port: an override
            // gives the address only.
            self.lookup(name)
                .await
                .map(|addrs| addrs.into_iter().map(|a| a.ip()).collect::<Vec<IpAddr>>())
                .map_err(aws_smithy_runtime_api::client::dns::ResolveDnsError::new)
        })
    }
}

/// The error and its sources, outermost first. An `io::Error`'s `source()`
/// skips the error it wraps (rustls' handshake errors travel as io errors
/// inside io errors), so the wrapped one is visited instead.
pub fn causes<'a>(e: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(e), |e: &&'a (dyn Error + 'static)| {
        match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn Error + 'static)),
            None => (*e).source(),
        }
    })
    .take(32)
}

/// The chain as one bounded line, each distinct message once (wrappers often
/// repeat their source's text).
pub fn describe(e: &(dyn Error + 'static)) -> String {
    const PART_LIMIT: usize = 4 * text::DETAIL_LIMIT;
    let mut parts: Vec<String> = Vec::new();
    for cause in causes(e).take(16) {
        let part = text::truncate(&cause.to_string(), PART_LIMIT);
        if !parts.iter().any(|p| p.contains(part.as_str())) {
            parts.push(part);
        }
    }
    parts
        .join(": ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A transport failure's kind, from the types in its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Dns,
    Tls,
    Timeout,
    Connection,
}

impl Transport {
    /// The first cause that tells; `Connection` when none does.
    pub fn of(e: &(dyn Error + 'static)) -> Self {
        for cause in causes(e) {
            if cause.is::<DnsFailed>() {
                return Self::Dns;
            }
            if cause.is::<rustls::Error>() {
                return Self::Tls;
            }
            if cause.is::<tokio::time::error::Elapsed>() {
                return Self::Timeout;
            }
            if let Some(io) = cause.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::TimedOut
            {
                return Self::Timeout;
            }
            if let Some(r) = cause.downcast_ref::<reqwest::Error>()
                && r.is_timeout()
            {
                return Self::Timeout;
            }
        }
        Self::Connection
    }

    pub fn error(self, detail: Detail) -> FetchError {
        match self {
            Self::Dns => FetchError::Dns(detail),
            Self::Tls => FetchError::Tls(detail),
            Self::Timeout => FetchError::Timeout(detail),
            Self::Connection => FetchError::Connection(detail),
        }
    }
}

/// A transport failure as the seam's error: kind from the chain's types,
/// detail from its messages.
pub fn transport_error(context: &str, e: &(dyn Error + 'static)) -> FetchError {
    Transport::of(e).error(Detail::new(&format!("{context}: {}", describe(e))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("request failed")]
    struct Wrapper(#[source] Box<dyn Error + Send + Sync>);

    #[test]
    fn kinds_come_from_types_however_deep() {
        let dns = Wrapper(Box::new(DnsFailed {
            name: "kv.example".into(),
            reason: "nope".into(),
        }));
        assert_eq!(Transport::of(&dns), Transport::Dns);
        // As reqwest delivers it: an io error inside an io error.
        let tls = Wrapper(Box::new(std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ))));
        assert_eq!(Transport::of(&tls), Transport::Tls);
        let timeout = Wrapper(Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut)));
        assert_eq!(Transport::of(&timeout), Transport::Timeout);
        let refused = Wrapper(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(Transport::of(&refused), Transport::Connection);
        // Words do not decide: "certificate" in a message is not TLS.
        let words = Wrapper(Box::new(std::io::Error::other("certificate dns timeout")));
        assert_eq!(Transport::of(&words), Transport::Connection);
    }

    #[test]
    fn the_description_names_each_cause_once_on_one_line() {
        let e = Wrapper(Box::new(std::io::Error::other("connection\nrefused")));
        assert_eq!(describe(&e), "request failed: connection refused");
        let err = transport_error("https://kv.example", &e);
        assert_eq!(err.label(), "connection");
        assert!(err.to_string().contains("https://kv.example"), "{err}");
    }

    #[tokio::test]
    async fn the_resolver_uses_overrides_then_fails_typed() {
        let r = SystemResolver::new(vec![(
            "kv.example".into(),
            "127.0.0.1:8443".parse().unwrap(),
        )]);
        assert_eq!(
            r.lookup("KV.example").await.unwrap(),
            vec!["127.0.0.1:8443".parse::<SocketAddr>().unwrap()]
        );
        let err = r.lookup("no-such-host.invalid").await.unwrap_err();
        assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
    }
}
