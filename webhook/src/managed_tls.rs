//! Self-managed TLS, the decisions: what the shared Secret holds, whether it
//! is still good for the names and the time, and issuing a CA and a serving
//! certificate (rcgen). `tls_keeper` reads and writes the Secret and the
//! MutatingWebhookConfiguration around these.
//!
//! The Secret (`kubernetes.io/tls`) holds `tls.crt`/`tls.key` (the serving
//! certificate and key), `ca.crt` (the bundle clients trust: the current CA,
//! then the previous one while certificates it signed may still be served)
//! and `ca.key` (the current CA's key).

use std::{collections::BTreeMap, time::Duration};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use time::OffsetDateTime;

pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const CA_BUNDLE: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";

/// Set to any new value to have the serving certificate renewed now (same CA).
pub const RENEW_ANNOTATION: &str = "secret-injector.io/renew";
/// The `RENEW_ANNOTATION` value the current certificate answered.
pub const RENEWED_FOR_ANNOTATION: &str = "secret-injector.io/renewed-for";

/// How long what we issue lives, and when it is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub ca: Duration,
    pub serving: Duration,
    /// Renew a certificate this long before it expires.
    pub renew_before: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        Self {
            ca: Duration::from_secs(10 * 365 * DAY),
            serving: Duration::from_secs(365 * DAY),
            renew_before: Duration::from_secs(30 * DAY),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    #[error("the Secret has no {0}")]
    Missing(&'static str),
    #[error("{0} in the Secret is not a PEM certificate")]
    NotACertificate(&'static str),
    #[error("{key} in the Secret cannot be parsed: {reason}")]
    Parse { key: &'static str, reason: String },
    #[error("cannot issue a certificate: {0}")]
    Issue(#[from] rcgen::Error),
}

/// The Secret's data, PEM text. Debug never shows the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Material {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_bundle_pem: String,
    pub ca_key_pem: String,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material").finish_non_exhaustive()
    }
}

impl Material {
    pub fn from_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Self, MaterialError> {
        let get = |key: &'static str| {
            data.get(key)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .filter(|v| !v.trim().is_empty())
                .ok_or(MaterialError::Missing(key))
        };
        Ok(Self {
            cert_pem: get(TLS_CERT)?,
            key_pem: get(TLS_KEY)?,
            ca_bundle_pem: get(CA_BUNDLE)?,
            ca_key_pem: get(CA_KEY)?,
        })
    }

    pub fn to_data(&self) -> BTreeMap<String, Vec<u8>> {
        [
            (TLS_CERT, &self.cert_pem),
            (TLS_KEY, &self.key_pem),
            (CA_BUNDLE, &self.ca_bundle_pem),
            (CA_KEY, &self.ca_key_pem),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
        .collect()
    }

    /// The current CA: the first certificate of the bundle.
    fn ca_pem(&self) -> Result<String, MaterialError> {
        let first = CertificateDer::pem_slice_iter(self.ca_bundle_pem.as_bytes())
            .next()
            .and_then(Result::ok)
            .ok_or(MaterialError::NotACertificate(CA_BUNDLE))?;
        Ok(pem_of(&first))
    }
}

fn pem_of(der: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// What a certificate says about itself that we decide on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    pub not_after: OffsetDateTime,
    /// DNS names and IP addresses, as text.
    pub dns_names: Vec<String>,
}

pub fn facts(pem: &str, key: &'static str) -> Result<CertFacts, MaterialError> {
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or(MaterialError::NotACertificate(key))?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| MaterialError::Parse {
            key,
            reason: e.to_string(),
        })?;
    let dns_names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                    x509_parser::extensions::GeneralName::IPAddress(ip) => ip_text(ip),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(CertFacts {
        not_after: cert.validity().not_after.to_datetime(),
        dns_names,
    })
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    use std::net::IpAddr;
    let ip: IpAddr = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok()?.into(),
        16 => <[u8; 16]>::try_from(bytes).ok()?.into(),
        _ => return None,
    };
    Some(ip.to_string())
}

/// What to do with what the Secret holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Good: serve it.
    Keep,
    /// A new serving certificate from the same CA.
    RenewServing(&'static str),
    /// A new CA (the old one stays in the bundle) and a serving certificate.
    RenewCa(&'static str),
    /// Nothing usable: a new CA and certificate.
    Create,
}

/// Pure: given the Secret's material (or why there is none usable), the names
/// to serve, the time, and whether a renewal was asked for.
pub fn plan(
    material: Option<&Material>,
    names: &[String],
    now: OffsetDateTime,
    lifetimes: &Lifetimes,
    renewal_requested: bool,
) -> Plan {
    let Some(material) = material else {
        return Plan::Create;
    };
    let ca = material.ca_pem().and_then(|pem| facts(&pem, CA_BUNDLE));
    let serving = facts(&material.cert_pem, TLS_CERT);
    let (Ok(ca), Ok(serving)) = (ca, serving) else {
        return Plan::Create;
    };
    let renew_at = |not_after: OffsetDateTime| not_after - lifetimes.renew_before;
    // A new serving certificate must not outlive its CA.
    if now >= renew_at(ca.not_after) || ca.not_after - now < lifetimes.serving {
        return Plan::RenewCa("the CA expires soon");
    }
    if renewal_requested {
        return Plan::RenewServing("a renewal was requested");
    }
    if now >= renew_at(serving.not_after) {
        return Plan::RenewServing("the serving certificate expires soon");
    }
    if !names.iter().all(|n| serving.dns_names.contains(n)) {
        return Plan::RenewServing("the serving certificate lacks a DNS name");
    }
    Plan::Keep
}

/// Carries a plan out: what to serve afterwards. `previous` is the Secret's
/// material (kept by `Keep`, the base of a renewal).
pub fn issue(
    plan: &Plan,
    previous: Option<&Material>,
    names: &[String],
    now: OffsetDateTime,
    lifetimes: &Lifetimes,
) -> Result<Material, MaterialError> {
    match (plan, previous) {
        (Plan::Keep, Some(previous)) => Ok(previous.clone()),
        (Plan::RenewServing(_), Some(previous)) => {
            let ca_key = KeyPair::from_pem(&previous.ca_key_pem)?;
            let issuer = Issuer::from_ca_cert_pem(&previous.ca_pem()?, ca_key)?;
            let (cert_pem, key_pem) = serving(&issuer, names, now, lifetimes)?;
            Ok(Material {
                cert_pem,
                key_pem,
                ca_bundle_pem: previous.ca_bundle_pem.clone(),
                ca_key_pem: previous.ca_key_pem.clone(),
            })
        }
        (_, previous) => {
            let (ca_pem, ca_key_pem, issuer) = new_ca(now, lifetimes)?;
            let (cert_pem, key_pem) = serving(&issuer, names, now, lifetimes)?;
            // Keep the CA being replaced trusted: replicas may still serve
            // what it signed until they pick the new certificate up.
            let mut ca_bundle_pem = ca_pem;
            if let Some(old) = previous.and_then(|p| p.ca_pem().ok()) {
                ca_bundle_pem.push_str(&old);
            }
            Ok(Material {
                cert_pem,
                key_pem,
                ca_bundle_pem,
                ca_key_pem,
            })
        }
    }
}

fn validity(params: &mut CertificateParams, now: OffsetDateTime, lifetime: Duration) {
    // A little back-dating absorbs clock skew between nodes.
    params.not_before = now - Duration::from_secs(300);
    params.not_after = now + lifetime;
}

fn new_ca(
    now: OffsetDateTime,
    lifetimes: &Lifetimes,
) -> Result<(String, String, Issuer<'static, KeyPair>), MaterialError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.distinguished_name.push(
        DnType::CommonName,
        format!("secret-injector webhook CA {}", now.unix_timestamp()),
    );
    validity(&mut params, now, lifetimes.ca);
    let cert = params.self_signed(&key)?;
    let key_pem = key.serialize_pem();
    Ok((cert.pem(), key_pem, Issuer::new(params, key)))
}

fn serving(
    issuer: &Issuer<'_, KeyPair>,
    names: &[String],
    now: OffsetDateTime,
    lifetimes: &Lifetimes,
) -> Result<(String, String), MaterialError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, now, lifetimes.serving);
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The CAs of a bundle, for comparing what the webhook configuration trusts.
pub fn certificates_in(bundle_pem: &str) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(bundle_pem.as_bytes())
        .filter_map(Result::ok)
        .map(|c| c.as_ref().to_vec())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn names() -> Vec<String> {
        vec![
            "secret-injector.secret-injector.svc".into(),
            "secret-injector.secret-injector.svc.cluster.local".into(),
        ]
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn created() -> Material {
        issue(&Plan::Create, None, &names(), now(), &Lifetimes::default()).unwrap()
    }

    fn install_provider() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }

    #[test]
    fn nothing_usable_means_create_and_the_result_is_kept() {
        let l = Lifetimes::default();
        assert_eq!(plan(None, &names(), now(), &l, false), Plan::Create);
        let m = created();
        assert_eq!(plan(Some(&m), &names(), now(), &l, false), Plan::Keep);
        // A restart reads the same Secret: the same decision, no new CA.
        let round_trip = Material::from_data(&m.to_data()).unwrap();
        assert_eq!(round_trip, m);
        assert_eq!(
            plan(Some(&round_trip), &names(), now(), &l, false),
            Plan::Keep
        );
    }

    #[test]
    fn the_serving_certificate_is_renewed_before_it_expires_with_the_same_ca() {
        let l = Lifetimes::default();
        let m = created();
        let later = now() + l.serving - l.renew_before + Duration::from_secs(60);
        let p = plan(Some(&m), &names(), later, &l, false);
        assert!(matches!(p, Plan::RenewServing(_)), "{p:?}");
        let renewed = issue(&p, Some(&m), &names(), now(), &l).unwrap();
        assert_eq!(renewed.ca_bundle_pem, m.ca_bundle_pem);
        assert_eq!(renewed.ca_key_pem, m.ca_key_pem);
        assert_ne!(renewed.cert_pem, m.cert_pem);
        // ... and verifies against the unchanged CA.
        assert_chain_verifies(&renewed, "secret-injector.secret-injector.svc");
    }

    #[test]
    fn a_requested_renewal_or_a_new_name_renews_the_serving_certificate() {
        let l = Lifetimes::default();
        let m = created();
        assert!(matches!(
            plan(Some(&m), &names(), now(), &l, true),
            Plan::RenewServing(_)
        ));
        let mut more = names();
        more.push("other.secret-injector.svc".into());
        assert!(matches!(
            plan(Some(&m), &more, now(), &l, false),
            Plan::RenewServing(_)
        ));
        // IP names count too (local runs by address).
        let by_ip = vec!["127.0.0.1".to_owned()];
        let m = issue(&Plan::Create, None, &by_ip, now(), &l).unwrap();
        assert_eq!(plan(Some(&m), &by_ip, now(), &l, false), Plan::Keep);
    }

    #[test]
    fn a_ca_near_its_end_is_replaced_and_the_old_one_stays_trusted() {
        let l = Lifetimes::default();
        let m = created();
        let later = now() + l.ca - l.serving + Duration::from_secs(60);
        let p = plan(Some(&m), &names(), later, &l, false);
        assert!(matches!(p, Plan::RenewCa(_)), "{p:?}");
        let renewed = issue(&p, Some(&m), &names(), now(), &l).unwrap();
        let bundle = certificates_in(&renewed.ca_bundle_pem);
        assert_eq!(bundle.len(), 2);
        assert_eq!(bundle[1], certificates_in(&m.ca_bundle_pem)[0]);
        assert_ne!(renewed.ca_key_pem, m.ca_key_pem);
        assert_chain_verifies(&renewed, "secret-injector.secret-injector.svc");
        assert_chain_verifies(&m, "secret-injector.secret-injector.svc");
    }

    #[test]
    fn garbage_in_the_secret_is_replaced() {
        let mut data = created().to_data();
        data.insert(TLS_CERT.into(), b"not a certificate".to_vec());
        let m = Material::from_data(&data).unwrap();
        assert_eq!(
            plan(Some(&m), &names(), now(), &Lifetimes::default(), false),
            Plan::Create
        );
        data.remove(CA_KEY);
        assert!(matches!(
            Material::from_data(&data),
            Err(MaterialError::Missing("ca.key"))
        ));
    }

    #[test]
    fn debug_never_shows_keys() {
        let m = created();
        assert!(!format!("{m:?}").contains("PRIVATE KEY"));
    }

    /// The serving chain verifies for `name` against every CA in the bundle
    /// that signed it, as the apiserver checks it.
    fn assert_chain_verifies(m: &Material, name: &str) {
        use rustls::client::danger::ServerCertVerifier;
        install_provider();
        let mut roots = rustls::RootCertStore::empty();
        for der in certificates_in(&m.ca_bundle_pem) {
            roots.add(CertificateDer::from(der)).unwrap();
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder(std::sync::Arc::new(roots))
            .build()
            .unwrap();
        let leaf = CertificateDer::pem_slice_iter(m.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let server_name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
        verifier
            .verify_server_cert(
                &leaf,
                &[],
                &server_name,
                &[],
                rustls_pki_types::UnixTime::now(),
            )
            .unwrap();
    }
}
