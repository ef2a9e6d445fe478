//! Key and certificate material: generation with rcgen, JWK, PEM and PFX encodings.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};
use sha1::Digest as _;

use crate::error::{Error, Result};

/// Key type of a generated key or certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyKind {
    /// RSA 2048 (`kty` `RSA`), the Key Vault default.
    #[default]
    #[serde(rename = "RSA")]
    Rsa2048,
    /// ECDSA P-256 (`kty` `EC`, `crv` `P-256`).
    #[serde(rename = "EC")]
    EcP256,
    /// ECDSA P-384 (`kty` `EC`, `crv` `P-384`).
    #[serde(rename = "EC-P384")]
    EcP384,
}

impl KeyKind {
    /// The JWK's `crv`; `None` for RSA.
    pub fn curve(self) -> Option<&'static str> {
        match self {
            Self::Rsa2048 => None,
            Self::EcP256 => Some("P-256"),
            Self::EcP384 => Some("P-384"),
        }
    }

    fn algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
            Self::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

/// How a certificate's backing secret holds the private key and certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContentType {
    /// `application/x-pem-file`: PKCS#8 private key PEM followed by the certificate PEM.
    #[default]
    #[serde(rename = "application/x-pem-file")]
    Pem,
    /// `application/x-pkcs12`: standard base64 of a PFX with an empty password.
    #[serde(rename = "application/x-pkcs12")]
    Pkcs12,
}

impl ContentType {
    /// The MIME type Key Vault uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pem => "application/x-pem-file",
            Self::Pkcs12 => "application/x-pkcs12",
        }
    }
}

/// What certificate to create (self-signed, like Key Vault's `issuer: Self`,
/// unless `chain`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CertificateSpec {
    /// Subject common name; empty = the certificate's name.
    pub common_name: String,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// Key type.
    pub key_type: KeyKind,
    /// Backing secret format.
    pub content_type: ContentType,
    /// Validity in days; 0 = 365.
    pub validity_days: u32,
    /// Issued by an intermediate CA that a root CA issued (both made for it,
    /// with the same key type), instead of self-signed. The PFX holds the
    /// chain as Key Vault keeps an imported one, in the importer's order:
    /// here leaf, root, intermediate, so a reader must order it.
    pub chain: bool,
}

/// Public key as a JWK.
#[derive(Clone, Debug)]
pub(crate) enum PublicJwk {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ec {
        crv: &'static str,
        x: Vec<u8>,
        y: Vec<u8>,
    },
}

impl PublicJwk {
    pub fn kty(&self) -> &'static str {
        match self {
            Self::Rsa { .. } => "RSA",
            Self::Ec { .. } => "EC",
        }
    }

    /// The JWK fields without `kid`/`key_ops`.
    pub fn fields(&self, map: &mut serde_json::Map<String, serde_json::Value>) {
        map.insert("kty".into(), self.kty().into());
        match self {
            Self::Rsa { n, e } => {
                map.insert("n".into(), URL_SAFE_NO_PAD.encode(n).into());
                map.insert("e".into(), URL_SAFE_NO_PAD.encode(e).into());
            }
            Self::Ec { crv, x, y } => {
                map.insert("crv".into(), (*crv).into());
                map.insert("x".into(), URL_SAFE_NO_PAD.encode(x).into());
                map.insert("y".into(), URL_SAFE_NO_PAD.encode(y).into());
            }
        }
    }

    pub fn key_ops(&self) -> Vec<&'static str> {
        match self {
            Self::Rsa { .. } => vec![
                "encrypt",
                "decrypt",
                "sign",
                "verify",
                "wrapKey",
                "unwrapKey",
            ],
            Self::Ec { .. } => vec!["sign", "verify"],
        }
    }
}

pub(crate) fn generate_key(kind: KeyKind) -> Result<(KeyPair, PublicJwk)> {
    let kp = KeyPair::generate_for(kind.algorithm())?;
    let raw = kp.public_key_raw();
    let jwk = match kind.curve() {
        None => {
            let (n, e) = parse_rsa_public_key(raw)?;
            PublicJwk::Rsa { n, e }
        }
        Some(crv) => {
            // Uncompressed point: 04 || x || y.
            let size = (raw.len().saturating_sub(1)) / 2;
            if raw.len() != 1 + 2 * size || raw[0] != 4 || size == 0 {
                return Err(Error::Crypto("unexpected EC public key encoding".into()));
            }
            PublicJwk::Ec {
                crv,
                x: raw[1..1 + size].to_vec(),
                y: raw[1 + size..].to_vec(),
            }
        }
    };
    Ok((kp, jwk))
}

/// A generated certificate (self-signed, or issued by a chain made for it) with its key.
pub(crate) struct CertMaterial {
    pub der: Vec<u8>,
    pub jwk: PublicJwk,
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
    /// The backing secret's value (PEM text or base64 PFX).
    pub secret_value: String,
    /// The PEM form (key + certificate, then the chain leaf to root), served
    /// for `outContentType=application/x-pem-file`.
    pub pem: String,
}

pub(crate) fn self_signed(name: &str, spec: &CertificateSpec) -> Result<CertMaterial> {
    let (kp, jwk) = generate_key(spec.key_type)?;
    let cn = if spec.common_name.is_empty() {
        name
    } else {
        &spec.common_name
    };
    let mut params = CertificateParams::new(spec.dns_names.clone())
        .map_err(|e| Error::Invalid(format!("dns name: {e}")))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let days = if spec.validity_days == 0 {
        365
    } else {
        spec.validity_days
    };
    params.not_before = now;
    params.not_after = now + time::Duration::days(i64::from(days));
    params.key_usages = match spec.key_type {
        KeyKind::Rsa2048 => vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ],
        KeyKind::EcP256 | KeyKind::EcP384 => vec![KeyUsagePurpose::DigitalSignature],
    };
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    // (DER, PEM) of the leaf, then of its CAs as the PFX holds them.
    let (der, cert_pem, cas) = if spec.chain {
        let ca = |cn: &str| -> Result<CertificateParams> {
            let mut p = CertificateParams::new(Vec::<String>::new())
                .map_err(|e| Error::Invalid(format!("CA: {e}")))?;
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, cn);
            p.distinguished_name = dn;
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            p.not_before = params.not_before;
            p.not_after = params.not_after;
            p.use_authority_key_identifier_extension = true;
            Ok(p)
        };
        let root = rcgen::CertifiedIssuer::self_signed(
            ca(&format!("{cn} root CA"))?,
            KeyPair::generate_for(spec.key_type.algorithm())?,
        )?;
        let intermediate = rcgen::CertifiedIssuer::signed_by(
            ca(&format!("{cn} intermediate CA"))?,
            KeyPair::generate_for(spec.key_type.algorithm())?,
            &root,
        )?;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&kp, &intermediate)?;
        let cas = vec![
            (root.der().to_vec(), root.pem()),
            (intermediate.der().to_vec(), intermediate.pem()),
        ];
        (cert.der().to_vec(), cert.pem(), cas)
    } else {
        let cert = params.self_signed(&kp)?;
        (cert.der().to_vec(), cert.pem(), Vec::new())
    };
    // PEM: leaf to root (the reverse of `cas`).
    let mut pem = format!("{}{cert_pem}", kp.serialize_pem());
    for (_, ca_pem) in cas.iter().rev() {
        pem.push_str(ca_pem);
    }
    let secret_value = match spec.content_type {
        ContentType::Pem => pem.clone(),
        ContentType::Pkcs12 => {
            let certs: Vec<&[u8]> = std::iter::once(der.as_slice())
                .chain(cas.iter().map(|(d, _)| d.as_slice()))
                .collect();
            STANDARD.encode(pfx(&kp.serialize_der(), &certs, name)?)
        }
    };
    Ok(CertMaterial {
        der,
        jwk,
        subject: format!("CN={cn}"),
        not_before: params.not_before.unix_timestamp(),
        not_after: params.not_after.unix_timestamp(),
        secret_value,
        pem,
    })
}

/// PFX as Key Vault exports one: the empty password, key and certificates
/// encrypted with pbeWithSHAAnd3-KeyTripleDES-CBC, a SHA-1 MAC, 2000
/// iterations (what Go's `x/crypto/pkcs12`, the CSI provider's, reads).
/// `certs[0]` is the key's certificate.
fn pfx(key_pkcs8: &[u8], certs: &[&[u8]], alias: &str) -> Result<Vec<u8>> {
    use p12_keystore::{
        Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
        PrivateKeyChain,
    };
    let crypto = |e: p12_keystore::error::Error| Error::Crypto(format!("pkcs12: {e}"));
    let key = PrivateKey::from_der(key_pkcs8).map_err(crypto)?;
    let chain = certs
        .iter()
        .map(|der| Certificate::from_der(der).map_err(crypto))
        .collect::<Result<Vec<_>>>()?;
    let local_key_id = sha1::Sha1::digest(certs.first().copied().unwrap_or_default()).to_vec();
    let mut store = KeyStore::new();
    store.add_entry(
        alias,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, chain)),
    );
    store
        .writer("")
        .encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
        .encryption_iterations(2000)
        .mac_algorithm(MacAlgorithm::HmacSha1)
        .mac_iterations(2000)
        .write()
        .map_err(crypto)
}

/// base64url (no padding) SHA-1 of the DER: Key Vault's `x5t`.
pub(crate) fn x5t(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(der))
}

/// Parses a PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn parse_rsa_public_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let bad = || Error::Crypto("unexpected RSA public key encoding".into());
    let (tag, body, _) = der_tlv(der).ok_or_else(bad)?;
    if tag != 0x30 {
        return Err(bad());
    }
    let (t1, n, rest) = der_tlv(body).ok_or_else(bad)?;
    let (t2, e, _) = der_tlv(rest).ok_or_else(bad)?;
    if t1 != 2 || t2 != 2 {
        return Err(bad());
    }
    let strip = |v: &[u8]| {
        let start = v
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(v.len().saturating_sub(1));
        v[start..].to_vec()
    };
    Ok((strip(n), strip(e)))
}

/// One DER TLV: (tag, contents, rest).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_jwk_has_65537_and_2048_bit_modulus() {
        let (_, jwk) = generate_key(KeyKind::Rsa2048).unwrap();
        let PublicJwk::Rsa { n, e } = jwk else {
            panic!("not RSA")
        };
        assert_eq!(e, vec![1, 0, 1]);
        assert_eq!(n.len(), 256);
    }

    #[test]
    fn pem_and_pfx_certificates() {
        let spec = CertificateSpec {
            content_type: ContentType::Pkcs12,
            key_type: KeyKind::EcP256,
            ..Default::default()
        };
        let m = self_signed("web", &spec).unwrap();
        let pfx = STANDARD.decode(&m.secret_value).unwrap();
        let store = p12_keystore::KeyStore::from_pkcs12(
            &pfx,
            "",
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .unwrap();
        let (_, chain) = store.private_key_chain().unwrap();
        assert_eq!(chain.certs()[0].as_der(), m.der.as_slice());
        assert_eq!(m.subject, "CN=web");

        let m = self_signed(
            "web",
            &CertificateSpec {
                content_type: ContentType::Pkcs12,
                key_type: KeyKind::EcP384,
                chain: true,
                ..Default::default()
            },
        )
        .unwrap();
        let PublicJwk::Ec { crv, x, .. } = &m.jwk else {
            panic!("not EC")
        };
        assert_eq!((*crv, x.len()), ("P-384", 48));
        let pfx = STANDARD.decode(&m.secret_value).unwrap();
        let store = p12_keystore::KeyStore::from_pkcs12(
            &pfx,
            "",
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .unwrap();
        let (_, chain) = store.private_key_chain().unwrap();
        // (p12-keystore orders a chain as it reads it; the file holds leaf,
        // root, intermediate, which the sidecar's tests see.)
        let mut subjects: Vec<&str> = chain.certs().iter().map(|c| c.subject()).collect();
        subjects.sort_unstable();
        assert_eq!(
            subjects,
            ["CN=web", "CN=web intermediate CA", "CN=web root CA"]
        );
        assert_eq!(chain.certs()[0].as_der(), m.der.as_slice());
        assert_eq!(m.pem.matches("-----BEGIN CERTIFICATE-----").count(), 3);

        let m = self_signed("web", &CertificateSpec::default()).unwrap();
        assert!(m.secret_value.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(m.secret_value.contains("-----BEGIN CERTIFICATE-----"));
    }
}
