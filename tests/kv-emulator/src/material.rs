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

/// What certificate to create (self-signed, like Key Vault's `issuer: Self`).
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
}

/// Public key as a JWK.
#[derive(Clone, Debug)]
pub(crate) enum PublicJwk {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec { x: Vec<u8>, y: Vec<u8> },
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
            Self::Ec { x, y } => {
                map.insert("crv".into(), "P-256".into());
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
    let kp = match kind {
        KeyKind::Rsa2048 => KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?,
        KeyKind::EcP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
    };
    let raw = kp.public_key_raw();
    let jwk = match kind {
        KeyKind::Rsa2048 => {
            let (n, e) = parse_rsa_public_key(raw)?;
            PublicJwk::Rsa { n, e }
        }
        KeyKind::EcP256 => {
            if raw.len() != 65 || raw[0] != 4 {
                return Err(Error::Crypto("unexpected EC public key encoding".into()));
            }
            PublicJwk::Ec {
                x: raw[1..33].to_vec(),
                y: raw[33..65].to_vec(),
            }
        }
    };
    Ok((kp, jwk))
}

/// A generated self-signed certificate with its key.
pub(crate) struct CertMaterial {
    pub der: Vec<u8>,
    pub jwk: PublicJwk,
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
    /// The backing secret's value (PEM text or base64 PFX).
    pub secret_value: String,
    /// The PEM form (key + certificate), served for `outContentType=application/x-pem-file`.
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
        KeyKind::EcP256 => vec![KeyUsagePurpose::DigitalSignature],
    };
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.self_signed(&kp)?;
    let der = cert.der().to_vec();
    let pem = format!("{}{}", kp.serialize_pem(), cert.pem());
    let secret_value = match spec.content_type {
        ContentType::Pem => pem.clone(),
        ContentType::Pkcs12 => STANDARD.encode(pfx(&kp.serialize_der(), &der, name)?),
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

/// PFX with an empty password (as Key Vault exports), key and certificate.
fn pfx(key_pkcs8: &[u8], cert_der: &[u8], alias: &str) -> Result<Vec<u8>> {
    use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
    let crypto = |e: p12_keystore::error::Error| Error::Crypto(format!("pkcs12: {e}"));
    let key = PrivateKey::from_der(key_pkcs8).map_err(crypto)?;
    let cert = Certificate::from_der(cert_der).map_err(crypto)?;
    let local_key_id = sha1::Sha1::digest(cert_der).to_vec();
    let mut store = KeyStore::new();
    store.add_entry(
        alias,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, [cert])),
    );
    store.writer("").write().map_err(crypto)
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

        let m = self_signed("web", &CertificateSpec::default()).unwrap();
        assert!(m.secret_value.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(m.secret_value.contains("-----BEGIN CERTIFICATE-----"));
    }
}
