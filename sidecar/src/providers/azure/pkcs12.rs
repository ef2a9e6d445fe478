//! A certificate's PFX, as Key Vault returns it in the certificate's secret
//! (content type `application/x-pkcs12`, standard base64, empty password), to
//! the PEM bundle the Secrets Store CSI driver's Azure provider writes for it
//! (`decodePKCS12` in its `pkg/provider/provider.go`):
//!
//! - every private key, in the PFX's order, re-marshalled as Go's
//!   `x509.MarshalPKCS8PrivateKey` does (`-----BEGIN PRIVATE KEY-----`, no PEM
//!   headers): PKCS#8 v0 with no attributes; RSA's inner key is PKCS#1 v0, an
//!   EC key is an ECPrivateKey v1 with the scalar padded to the curve's size,
//!   the public key (derived from the private scalar) and no `[0]` parameters,
//!   the curve being in the AlgorithmIdentifier;
//! - then every certificate, ordered server, intermediate, root by matching
//!   Authority and Subject Key Identifiers (`fetchCertChains`, the provider's
//!   default `--construct-pem-chain=true`); the PFX's order when they do not
//!   make one chain. No certificate at all is an error there, and here.
//!
//! Read as Go's `golang.org/x/crypto/pkcs12` reads it: DER, version 3, a MAC
//! checked with the empty password (as a BMPString, then as no bytes at all),
//! certificate and shrouded-key bags. Beyond it, and so no PFX it reads is
//! written differently: SHA-2 MACs, PBES2 (PBKDF2, AES-CBC) as OpenSSL 3 and
//! others write by default, and unencrypted key bags.
//!
//! Every buffer that holds key material is wiped; errors say what is wrong
//! with the structure, never a byte of it.

use aws_lc_rs::{
    cipher::{self, DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey},
    digest, hmac, pbkdf2,
    rsa::KeyPair as RsaKeyPair,
    signature::{self, EcdsaKeyPair},
};
use cbc::cipher::{BlockModeDecrypt, InnerIvInit, KeyIvInit, block_padding::Pkcs7};
use zeroize::Zeroizing;

use crate::pem;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Pkcs12Error {
    #[error("the PFX is not base64")]
    Base64,
    #[error("the PFX is not a PKCS#12 file: malformed {0}")]
    Malformed(&'static str),
    #[error("the PFX is not a PKCS#12 v3 file")]
    Version,
    #[error("the PFX has no MAC (Key Vault's always have one)")]
    NoMac,
    #[error("the PFX's MAC does not verify with the empty password Key Vault uses")]
    Mac,
    #[error("the PFX's {0} cannot be decrypted with the empty password")]
    Decrypt(&'static str),
    #[error("the PFX uses {what} {oid}, which cannot be read")]
    Unsupported { what: &'static str, oid: String },
    #[error("the PFX's iteration count {0} is out of range (1 to 10000000)")]
    Iterations(u64),
    #[error("the PFX's private key is not a valid {algorithm} key ({reason})")]
    Key {
        algorithm: &'static str,
        reason: &'static str,
    },
    #[error("the PFX has no leaf certificate (no certificate, or each one signed another)")]
    NoLeaf,
    #[error("the PFX's certificates make a cycle")]
    Cycle,
}

type Result<T> = std::result::Result<T, Pkcs12Error>;

/// The PEM bundle for `value`, the secret's value as Key Vault returns it.
pub fn pem_bundle(value: &str) -> Result<Zeroizing<String>> {
    let pfx = decode_base64(value)?;
    let (keys, certs) = read_pfx(&pfx)?;
    let order = chain_order(&certs)?;
    let blocks: Vec<Zeroizing<String>> = keys
        .iter()
        .map(|der| Zeroizing::new(pem::pem("PRIVATE KEY", der)))
        .chain(
            order
                .iter()
                .map(|&i| Zeroizing::new(pem::certificate_pem(&certs[i]))),
        )
        .collect();
    // One allocation: no reallocation leaves a copy of a key behind.
    let mut out = Zeroizing::new(String::with_capacity(blocks.iter().map(|b| b.len()).sum()));
    for block in &blocks {
        out.push_str(block);
    }
    Ok(out)
}

/// Go's `base64.StdEncoding.DecodeString`: padded, `\r` and `\n` skipped.
fn decode_base64(value: &str) -> Result<Zeroizing<Vec<u8>>> {
    use base64::{
        Engine,
        alphabet::STANDARD,
        engine::{GeneralPurpose, GeneralPurposeConfig},
    };
    const GO_STD: GeneralPurpose = GeneralPurpose::new(
        &STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let text: Zeroizing<Vec<u8>> = Zeroizing::new(
        value
            .bytes()
            .filter(|b| *b != b'\r' && *b != b'\n')
            .collect(),
    );
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() / 4 * 3 + 3));
    GO_STD
        .decode_vec(&*text, &mut out)
        .map_err(|_| Pkcs12Error::Base64)?;
    Ok(out)
}

// ---- DER ------------------------------------------------------------------

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const CONTEXT_0: u8 = 0xa0;
const CONTEXT_0_PRIMITIVE: u8 = 0x80;
const CONTEXT_3: u8 = 0xa3;

/// A strict DER reader over borrowed bytes (definite, minimal lengths).
#[derive(Clone, Copy)]
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    fn next(&mut self, what: &'static str) -> Result<(u8, &'a [u8])> {
        let bad = Pkcs12Error::Malformed(what);
        let (&tag, rest) = self.0.split_first().ok_or(bad.clone())?;
        if tag & 0x1f == 0x1f {
            return Err(bad);
        }
        let (&first, rest) = rest.split_first().ok_or(bad.clone())?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            // 0x80 is BER's indefinite length, which Go's asn1 refuses too.
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err(bad);
            }
            let (bytes, rest) = rest.split_at(n);
            let len = bytes.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b));
            if bytes.first() == Some(&0) || len < 0x80 {
                return Err(bad);
            }
            (len, rest)
        };
        if rest.len() < len {
            return Err(bad);
        }
        let (content, rest) = rest.split_at(len);
        self.0 = rest;
        Ok((tag, content))
    }

    fn expect(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8]> {
        match self.next(what)? {
            (t, content) if t == tag => Ok(content),
            _ => Err(Pkcs12Error::Malformed(what)),
        }
    }

    fn optional(&mut self, tag: u8, what: &'static str) -> Result<Option<&'a [u8]>> {
        if self.peek() == Some(tag) {
            self.expect(tag, what).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The whole input is one `tag` element.
    fn only(input: &'a [u8], tag: u8, what: &'static str) -> Result<Der<'a>> {
        let mut outer = Der(input);
        let content = outer.expect(tag, what)?;
        if !outer.is_empty() {
            return Err(Pkcs12Error::Malformed(what));
        }
        Ok(Der(content))
    }
}

/// A non-negative INTEGER of at most 64 bits.
fn uint(content: &[u8], what: &'static str) -> Result<u64> {
    let bad = Pkcs12Error::Malformed(what);
    let digits = match content {
        [0, rest @ ..] if !rest.is_empty() => rest,
        [first, ..] if first & 0x80 != 0 => return Err(bad),
        [] => return Err(bad),
        all => all,
    };
    if digits.len() > 8 {
        return Err(bad);
    }
    Ok(digits.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b)))
}

fn iterations(content: &[u8], what: &'static str) -> Result<u32> {
    let n = uint(content, what)?;
    // Key Vault writes 2000, OpenSSL 2048; far more is a server making the
    // sidecar burn CPU.
    match u32::try_from(n) {
        Ok(n @ 1..=10_000_000) => Ok(n),
        _ => Err(Pkcs12Error::Iterations(n)),
    }
}

/// Dotted form of an OID's content, for errors (OIDs are not secret).
fn dotted(oid: &[u8]) -> String {
    let mut arcs = Vec::new();
    let mut value: u64 = 0;
    for &b in oid {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(value);
            value = 0;
        }
    }
    let mut out = String::new();
    if let Some((&first, rest)) = arcs.split_first() {
        let (a, b) = match first {
            0..=39 => (0, first),
            40..=79 => (1, first - 40),
            _ => (2, first - 80),
        };
        out = format!("{a}.{b}");
        for arc in rest {
            out.push_str(&format!(".{arc}"));
        }
    }
    out
}

fn unsupported(what: &'static str, oid: &[u8]) -> Pkcs12Error {
    Pkcs12Error::Unsupported {
        what,
        oid: dotted(oid),
    }
}

mod oid {
    pub const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    pub const ENCRYPTED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x06];
    pub const KEY_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x01,
    ];
    pub const SHROUDED_KEY_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x02,
    ];
    pub const CERT_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x03,
    ];
    pub const X509_CERTIFICATE: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x16, 0x01];
    pub const PBE_SHA1_3DES: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x03];
    pub const PBE_SHA1_RC2_40: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x06];
    pub const PBES2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d];
    pub const PBKDF2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0c];
    pub const HMAC_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x07];
    pub const HMAC_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x09];
    pub const HMAC_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x0a];
    pub const HMAC_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x0b];
    pub const AES_128_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02];
    pub const AES_192_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x16];
    pub const AES_256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];
    pub const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
    pub const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    pub const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
    pub const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
    pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    pub const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    pub const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    pub const P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
    pub const SUBJECT_KEY_ID: &[u8] = &[0x55, 0x1d, 0x0e];
    pub const AUTHORITY_KEY_ID: &[u8] = &[0x55, 0x1d, 0x23];
}

// ---- PFX ------------------------------------------------------------------

/// The password as PKCS#12 KDFs take it: the empty BMPString (its two-byte
/// terminator), or, as Go retries when that MAC fails, no bytes.
const PASSWORDS: [&[u8]; 2] = [&[0, 0], &[]];

type Keys = Vec<Zeroizing<Vec<u8>>>;

/// Keys (canonical PKCS#8) and certificates (DER), each in the PFX's order.
fn read_pfx(pfx: &[u8]) -> Result<(Keys, Vec<Vec<u8>>)> {
    let mut d = Der::only(pfx, SEQUENCE, "PFX")?;
    if uint(d.expect(INTEGER, "PFX version")?, "PFX version")? != 3 {
        return Err(Pkcs12Error::Version);
    }
    let mut auth_safe = Der(d.expect(SEQUENCE, "authSafe")?);
    let content_type = auth_safe.expect(OID, "authSafe")?;
    if content_type != oid::DATA {
        return Err(unsupported("an authSafe of content type", content_type));
    }
    let auth_safe = Der::only(
        auth_safe.expect(CONTEXT_0, "authSafe")?,
        OCTET_STRING,
        "authSafe",
    )?
    .0;
    let mac = d.optional(SEQUENCE, "macData")?.ok_or(Pkcs12Error::NoMac)?;
    let password = verify_mac(mac, auth_safe)?;

    let (mut keys, mut certs) = (Vec::new(), Vec::new());
    let mut infos = Der::only(auth_safe, SEQUENCE, "authenticatedSafe")?;
    while !infos.is_empty() {
        let mut info = Der(infos.expect(SEQUENCE, "contentInfo")?);
        let content_type = info.expect(OID, "contentInfo")?;
        let content = info.expect(CONTEXT_0, "contentInfo")?;
        if content_type == oid::DATA {
            let bags = Der::only(content, OCTET_STRING, "contentInfo")?.0;
            read_bags(bags, password, &mut keys, &mut certs)?;
        } else if content_type == oid::ENCRYPTED_DATA {
            let mut data = Der::only(content, SEQUENCE, "encryptedData")?;
            data.expect(INTEGER, "encryptedData")?;
            let mut info = Der(data.expect(SEQUENCE, "encryptedContentInfo")?);
            info.expect(OID, "encryptedContentInfo")?;
            let algorithm = info.expect(SEQUENCE, "encryptedContentInfo")?;
            let encrypted = info.expect(CONTEXT_0_PRIMITIVE, "encryptedContent")?;
            let bags = decrypt(algorithm, encrypted, password, "certificates")?;
            read_bags(&bags, password, &mut keys, &mut certs)?;
        } else {
            return Err(unsupported("a contentInfo of type", content_type));
        }
    }
    Ok((keys, certs))
}

fn read_bags(
    bags: &[u8],
    password: &[u8],
    keys: &mut Keys,
    certs: &mut Vec<Vec<u8>>,
) -> Result<()> {
    let mut bags = Der::only(bags, SEQUENCE, "safeContents")?;
    while !bags.is_empty() {
        let mut bag = Der(bags.expect(SEQUENCE, "safeBag")?);
        let id = bag.expect(OID, "safeBag")?;
        let value = bag.expect(CONTEXT_0, "safeBag")?;
        // Attributes (friendlyName, localKeyId): the provider drops them.
        bag.optional(SET, "safeBag attributes")?;
        if id == oid::CERT_BAG {
            let mut cert = Der::only(value, SEQUENCE, "certBag")?;
            let kind = cert.expect(OID, "certBag")?;
            if kind != oid::X509_CERTIFICATE {
                return Err(unsupported("a certificate of type", kind));
            }
            let der = Der::only(cert.expect(CONTEXT_0, "certBag")?, OCTET_STRING, "certBag")?.0;
            certs.push(der.to_vec());
        } else if id == oid::SHROUDED_KEY_BAG {
            let mut info = Der::only(value, SEQUENCE, "shrouded key bag")?;
            let algorithm = info.expect(SEQUENCE, "shrouded key bag")?;
            let encrypted = info.expect(OCTET_STRING, "shrouded key bag")?;
            let pkcs8 = decrypt(algorithm, encrypted, password, "private key")?;
            keys.push(canonical_pkcs8(&pkcs8)?);
        } else if id == oid::KEY_BAG {
            keys.push(canonical_pkcs8(value)?);
        } else {
            return Err(unsupported("a safe bag of type", id));
        }
    }
    Ok(())
}

// ---- MAC and decryption ---------------------------------------------------

#[derive(Clone, Copy)]
enum Hash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn from_oid(oid: &[u8]) -> Option<Self> {
        Some(match oid {
            oid::SHA1 => Self::Sha1,
            oid::SHA256 => Self::Sha256,
            oid::SHA384 => Self::Sha384,
            oid::SHA512 => Self::Sha512,
            _ => return None,
        })
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
            Self::Sha512 => &digest::SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Self::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha384 => hmac::HMAC_SHA384,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }
}

/// RFC 7292 appendix B.2: the PKCS#12 key derivation (`id` 1 key, 2 IV, 3 MAC).
///
/// The password is empty, so what comes out can be derived by anyone who has
/// the file; it is wiped all the same, since it opens the key.
fn pkcs12_kdf(
    hash: Hash,
    id: u8,
    salt: &[u8],
    password: &[u8],
    rounds: u32,
    n: usize,
) -> Zeroizing<Vec<u8>> {
    let alg = hash.digest();
    let u = alg.output_len();
    let v = alg.block_len();
    let fill = |src: &[u8]| -> Zeroizing<Vec<u8>> {
        let len = v * src.len().div_ceil(v);
        Zeroizing::new(src.iter().cycle().take(len).copied().collect())
    };
    let (s, p) = (fill(salt), fill(password));
    let mut i = Zeroizing::new(Vec::with_capacity(s.len() + p.len()));
    i.extend_from_slice(&s);
    i.extend_from_slice(&p);
    let d = vec![id; v];
    let mut out = Zeroizing::new(Vec::with_capacity(n + u));
    loop {
        let mut ctx = digest::Context::new(alg);
        ctx.update(&d);
        ctx.update(&i);
        let mut a = ctx.finish();
        for _ in 1..rounds {
            a = digest::digest(alg, a.as_ref());
        }
        out.extend_from_slice(a.as_ref());
        if out.len() >= n {
            break;
        }
        let b: Zeroizing<Vec<u8>> =
            Zeroizing::new(a.as_ref().iter().cycle().take(v).copied().collect());
        for block in i.chunks_mut(v) {
            let mut carry = 1u16;
            for (x, y) in block.iter_mut().zip(b.iter()).rev() {
                let sum = u16::from(*x) + u16::from(*y) + carry;
                *x = (sum & 0xff) as u8;
                carry = sum >> 8;
            }
        }
    }
    out.truncate(n);
    out
}

/// The password the MAC verifies with.
fn verify_mac(mac: &[u8], auth_safe: &[u8]) -> Result<&'static [u8]> {
    let mut mac = Der(mac);
    let mut digest_info = Der(mac.expect(SEQUENCE, "macData")?);
    let mut algorithm = Der(digest_info.expect(SEQUENCE, "macData")?);
    let hash_oid = algorithm.expect(OID, "macData")?;
    let hash = Hash::from_oid(hash_oid).ok_or_else(|| unsupported("a MAC digest", hash_oid))?;
    let expected = digest_info.expect(OCTET_STRING, "macData")?;
    let salt = mac.expect(OCTET_STRING, "macData")?;
    let rounds = match mac.optional(INTEGER, "macData")? {
        Some(n) => iterations(n, "macData")?,
        None => 1,
    };
    for password in PASSWORDS {
        let key = pkcs12_kdf(hash, 3, salt, password, rounds, hash.digest().output_len());
        let key = hmac::Key::new(hash.hmac(), &key);
        if hmac::verify(&key, auth_safe, expected).is_ok() {
            return Ok(password);
        }
    }
    Err(Pkcs12Error::Mac)
}

/// Decrypts `data` encrypted with `algorithm` (an AlgorithmIdentifier's content).
fn decrypt(
    algorithm: &[u8],
    data: &[u8],
    password: &[u8],
    what: &'static str,
) -> Result<Zeroizing<Vec<u8>>> {
    let mut algorithm = Der(algorithm);
    let id = algorithm.expect(OID, "encryption algorithm")?;
    let mut params = Der(algorithm.expect(SEQUENCE, "encryption parameters")?);
    let failed = Pkcs12Error::Decrypt(what);
    let mut buf = Zeroizing::new(data.to_vec());
    let len = match id {
        oid::PBE_SHA1_3DES | oid::PBE_SHA1_RC2_40 => {
            let salt = params.expect(OCTET_STRING, "PBE parameters")?;
            let rounds = iterations(params.expect(INTEGER, "PBE parameters")?, "PBE parameters")?;
            let key_len = if id == oid::PBE_SHA1_3DES { 24 } else { 5 };
            let key = pkcs12_kdf(Hash::Sha1, 1, salt, password, rounds, key_len);
            let iv = pkcs12_kdf(Hash::Sha1, 2, salt, password, rounds, 8);
            let plain = if id == oid::PBE_SHA1_3DES {
                cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
                    .map_err(|_| failed.clone())?
                    .decrypt_padded::<Pkcs7>(&mut buf)
            } else {
                let rc2 = rc2::Rc2::new_with_eff_key_len(&key, 40);
                cbc::Decryptor::<rc2::Rc2>::inner_iv_slice_init(rc2, &iv)
                    .map_err(|_| failed.clone())?
                    .decrypt_padded::<Pkcs7>(&mut buf)
            };
            plain.map_err(|_| failed.clone())?.len()
        }
        oid::PBES2 => {
            let mut kdf = Der(params.expect(SEQUENCE, "PBES2 parameters")?);
            let kdf_id = kdf.expect(OID, "PBES2 parameters")?;
            if kdf_id != oid::PBKDF2 {
                return Err(unsupported("a key derivation", kdf_id));
            }
            let mut kdf = Der(kdf.expect(SEQUENCE, "PBKDF2 parameters")?);
            let salt = kdf.expect(OCTET_STRING, "PBKDF2 parameters")?;
            let rounds = iterations(
                kdf.expect(INTEGER, "PBKDF2 parameters")?,
                "PBKDF2 parameters",
            )?;
            let key_len = kdf
                .optional(INTEGER, "PBKDF2 parameters")?
                .map(|n| uint(n, "PBKDF2 parameters"))
                .transpose()?;
            let prf = match kdf.optional(SEQUENCE, "PBKDF2 parameters")? {
                None => pbkdf2::PBKDF2_HMAC_SHA1,
                Some(prf) => {
                    let prf = Der(prf).expect(OID, "PBKDF2 parameters")?;
                    match prf {
                        oid::HMAC_SHA1 => pbkdf2::PBKDF2_HMAC_SHA1,
                        oid::HMAC_SHA256 => pbkdf2::PBKDF2_HMAC_SHA256,
                        oid::HMAC_SHA384 => pbkdf2::PBKDF2_HMAC_SHA384,
                        oid::HMAC_SHA512 => pbkdf2::PBKDF2_HMAC_SHA512,
                        other => return Err(unsupported("a PBKDF2 function", other)),
                    }
                }
            };
            let mut scheme = Der(params.expect(SEQUENCE, "PBES2 parameters")?);
            let cipher_id = scheme.expect(OID, "PBES2 parameters")?;
            let (cipher, cipher_key_len) = match cipher_id {
                oid::AES_128_CBC => (&cipher::AES_128, 16),
                oid::AES_192_CBC => (&cipher::AES_192, 24),
                oid::AES_256_CBC => (&cipher::AES_256, 32),
                other => return Err(unsupported("a cipher", other)),
            };
            let iv: [u8; 16] = scheme
                .expect(OCTET_STRING, "PBES2 IV")?
                .try_into()
                .map_err(|_| Pkcs12Error::Malformed("PBES2 IV"))?;
            if key_len.is_some_and(|n| n != cipher_key_len as u64) {
                return Err(Pkcs12Error::Malformed("PBKDF2 key length"));
            }
            let mut key = Zeroizing::new(vec![0u8; cipher_key_len]);
            let rounds = std::num::NonZeroU32::new(rounds).ok_or(Pkcs12Error::Iterations(0))?;
            // PBES2 takes the password's bytes as they are (none), not a BMPString.
            pbkdf2::derive(prf, rounds, salt, &[], &mut key);
            let key = UnboundCipherKey::new(cipher, &key)
                .and_then(PaddedBlockDecryptingKey::cbc_pkcs7)
                .map_err(|_| failed.clone())?;
            key.decrypt(&mut buf, DecryptionContext::Iv128(iv.into()))
                .map_err(|_| failed.clone())?
                .len()
        }
        other => return Err(unsupported("an encryption algorithm", other)),
    };
    buf.truncate(len);
    Ok(buf)
}

// ---- Keys -----------------------------------------------------------------

/// A PKCS#8 PrivateKeyInfo as Go's `x509.MarshalPKCS8PrivateKey` writes the
/// key it holds (aws-lc marshals the same DER: see the module's doc).
fn canonical_pkcs8(info: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let mut d = Der::only(info, SEQUENCE, "private key")?;
    d.expect(INTEGER, "private key")?;
    let mut algorithm = Der(d.expect(SEQUENCE, "private key algorithm")?);
    let private_key = d.expect(OCTET_STRING, "private key")?;
    // Attributes and a v2 public key that may follow: Go drops them.
    let id = algorithm.expect(OID, "private key algorithm")?;
    let rejected = |algorithm: &'static str| {
        move |e: aws_lc_rs::error::KeyRejected| Pkcs12Error::Key {
            algorithm,
            reason: e.description_(),
        }
    };
    let der = match id {
        oid::RSA_ENCRYPTION => {
            use aws_lc_rs::encoding::AsDer;
            let key = RsaKeyPair::from_der(private_key).map_err(rejected("RSA"))?;
            let der = key.as_der().map_err(|_| Pkcs12Error::Key {
                algorithm: "RSA",
                reason: "cannot be marshalled",
            })?;
            Zeroizing::new(der.as_ref().to_vec())
        }
        oid::EC_PUBLIC_KEY => {
            let curve = algorithm.expect(OID, "EC key curve")?;
            let (alg, name) = match curve {
                oid::P256 => (&signature::ECDSA_P256_SHA256_ASN1_SIGNING, "P-256"),
                oid::P384 => (&signature::ECDSA_P384_SHA384_ASN1_SIGNING, "P-384"),
                oid::P521 => (&signature::ECDSA_P521_SHA512_ASN1_SIGNING, "P-521"),
                // P-256K: Go's x509 cannot read it either.
                other => return Err(unsupported("an elliptic curve", other)),
            };
            let key =
                EcdsaKeyPair::from_private_key_der(alg, private_key).map_err(rejected(name))?;
            let der = key.to_pkcs8v1().map_err(|_| Pkcs12Error::Key {
                algorithm: name,
                reason: "cannot be marshalled",
            })?;
            Zeroizing::new(der.as_ref().to_vec())
        }
        other => return Err(unsupported("a private key algorithm", other)),
    };
    Ok(der)
}

// ---- Chain ----------------------------------------------------------------

/// A certificate's (subject key id, authority key id), as Go's x509 reads
/// them: absent when the extension (or the AKI's keyIdentifier) is.
type KeyIds<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

fn key_ids(der: &[u8]) -> Result<KeyIds<'_>> {
    const WHAT: &str = "certificate";
    let mut cert = Der::only(der, SEQUENCE, WHAT)?;
    let mut tbs = Der(cert.expect(SEQUENCE, WHAT)?);
    cert.expect(SEQUENCE, WHAT)?;
    cert.expect(0x03, WHAT)?;
    if !cert.is_empty() {
        return Err(Pkcs12Error::Malformed(WHAT));
    }
    tbs.optional(CONTEXT_0, WHAT)?;
    tbs.expect(INTEGER, WHAT)?;
    for _ in 0..5 {
        // signature, issuer, validity, subject, subjectPublicKeyInfo
        tbs.expect(SEQUENCE, WHAT)?;
    }
    let (mut ski, mut aki) = (None, None);
    while let Some(tag) = tbs.peek() {
        let (_, content) = tbs.next(WHAT)?;
        if tag != CONTEXT_3 {
            // issuerUniqueID, subjectUniqueID
            continue;
        }
        let mut extensions = Der::only(content, SEQUENCE, WHAT)?;
        while !extensions.is_empty() {
            let mut ext = Der(extensions.expect(SEQUENCE, WHAT)?);
            let id = ext.expect(OID, WHAT)?;
            ext.optional(0x01, WHAT)?;
            let value = ext.expect(OCTET_STRING, WHAT)?;
            if id == oid::SUBJECT_KEY_ID {
                ski = Some(Der::only(value, OCTET_STRING, WHAT)?.0);
            } else if id == oid::AUTHORITY_KEY_ID {
                aki = Der::only(value, SEQUENCE, WHAT)?.optional(CONTEXT_0_PRIMITIVE, WHAT)?;
            }
        }
    }
    Ok((ski, aki))
}

/// `fetchCertChains`: the indices of `certs` from leaf to root, or in the
/// PFX's order when they do not make one chain.
fn chain_order(certs: &[Vec<u8>]) -> Result<Vec<usize>> {
    let ids = certs
        .iter()
        .map(|c| key_ids(c))
        .collect::<Result<Vec<_>>>()?;
    let n = ids.len();
    let mut parent = vec![None; n];
    let mut is_parent = vec![false; n];
    for (i, &(_, aki)) in ids.iter().enumerate() {
        for (j, &(ski, _)) in ids.iter().enumerate() {
            if i == j || (aki.is_none() && ski.is_none()) {
                continue;
            }
            if aki.unwrap_or_default() == ski.unwrap_or_default() {
                is_parent[j] = true;
                parent[i] = Some(j);
                break;
            }
        }
    }
    let leaf = is_parent
        .iter()
        .position(|p| !p)
        .ok_or(Pkcs12Error::NoLeaf)?;
    let mut chain = Vec::with_capacity(n);
    let mut node = Some(leaf);
    while let Some(i) = node {
        if chain.len() == n {
            return Err(Pkcs12Error::Cycle);
        }
        chain.push(i);
        node = parent[i];
    }
    if chain.len() != n {
        // The provider logs "certificate chain is not complete" and keeps
        // Key Vault's order.
        return Ok((0..n).collect());
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            (
                $name,
                include_str!(concat!("testdata/", $name, ".pfx.b64")),
                include_str!(concat!("testdata/", $name, ".pem")),
            )
        };
    }

    /// (name, the secret's value, what the provider writes).
    const FIXTURES: [(&str, &str, &str); 5] = [
        fixture!("keyvault-rsa"),
        fixture!("ec-chain"),
        fixture!("p384-chain"),
        fixture!("rsa3072"),
        fixture!("p521"),
    ];

    #[test]
    fn writes_what_the_provider_writes_byte_for_byte() {
        for (name, value, expected) in FIXTURES {
            let bundle = pem_bundle(value).unwrap();
            assert_eq!(bundle.as_str(), expected, "{name}");
        }
    }

    /// The DER of each PEM block in `text`, with its label.
    fn blocks(text: &str) -> Vec<(String, Vec<u8>)> {
        use base64::Engine;
        let mut out = Vec::new();
        let mut label = None;
        let mut body = String::new();
        for line in text.lines() {
            if let Some(l) = line.strip_prefix("-----BEGIN ") {
                label = Some(l.trim_end_matches('-').to_owned());
                body.clear();
            } else if line.starts_with("-----END ") {
                let der = base64::engine::general_purpose::STANDARD
                    .decode(&body)
                    .unwrap();
                out.push((label.take().unwrap(), der));
            } else {
                body.push_str(line);
            }
        }
        out
    }

    #[test]
    fn a_chain_given_in_any_order_is_written_leaf_intermediate_root() {
        let (_, _, expected) = fixture!("p384-chain");
        let certs: Vec<Vec<u8>> = blocks(expected)
            .into_iter()
            .filter(|(l, _)| l == "CERTIFICATE")
            .map(|(_, der)| der)
            .collect();
        let [leaf, intermediate, root] = [0, 1, 2].map(|i| certs[i].clone());
        for (given, want) in [
            (vec![&root, &leaf, &intermediate], vec![1, 2, 0]),
            (vec![&intermediate, &root, &leaf], vec![2, 0, 1]),
            (vec![&leaf, &intermediate, &root], vec![0, 1, 2]),
        ] {
            let given: Vec<Vec<u8>> = given.into_iter().cloned().collect();
            assert_eq!(chain_order(&given).unwrap(), want);
        }
        // No intermediate: not one chain, so the PFX's order.
        assert_eq!(
            chain_order(&[root.clone(), leaf.clone()]).unwrap(),
            vec![0, 1]
        );
        assert_eq!(chain_order(&[]), Err(Pkcs12Error::NoLeaf));
        assert_eq!(
            chain_order(&[b"not a certificate".to_vec()]),
            Err(Pkcs12Error::Malformed("certificate"))
        );
    }

    fn openssl(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A key and a certificate signed by `ca` (or self-signed), in `dir`.
    fn issue(dir: &std::path::Path, name: &str, key: &[&str], ca: Option<&str>) {
        let mut genpkey = vec!["genpkey", "-out", "K"];
        genpkey.extend_from_slice(key);
        let k = format!("{name}.key");
        genpkey[2] = &k;
        openssl(dir, &genpkey);
        let subject = format!("/CN={name}");
        let crt = format!("{name}.crt");
        match ca {
            None => {
                openssl(
                    dir,
                    &[
                        "req", "-x509", "-new", "-key", &k, "-subj", &subject, "-days", "30",
                        "-out", &crt,
                    ],
                );
            }
            Some(ca) => {
                let csr = format!("{name}.csr");
                openssl(
                    dir,
                    &["req", "-new", "-key", &k, "-subj", &subject, "-out", &csr],
                );
                std::fs::write(
                    dir.join("ext"),
                    "basicConstraints=critical,CA:TRUE\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
                )
                .unwrap();
                let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
                openssl(
                    dir,
                    &[
                        "x509",
                        "-req",
                        "-in",
                        &csr,
                        "-CA",
                        &ca_crt,
                        "-CAkey",
                        &ca_key,
                        "-CAcreateserial",
                        "-days",
                        "30",
                        "-extfile",
                        "ext",
                        "-out",
                        &crt,
                    ],
                );
            }
        }
    }

    fn base64_of(path: &std::path::Path) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap())
    }

    /// RSA and EC keys with a chain of three given out of order, in PFX
    /// files as OpenSSL 3 writes them by default (PBES2 with AES-256, a
    /// SHA-256 MAC): each key is the PKCS#8 OpenSSL itself writes for it (the
    /// same DER as Go's), and the certificates come leaf first.
    #[test]
    fn openssl_default_pfx_rsa_p256_p384() {
        for key in [
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        ] {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            issue(d, "root", key, None);
            issue(d, "intermediate", key, Some("root"));
            issue(d, "leaf", key, Some("intermediate"));
            let cas = [
                std::fs::read(d.join("root.crt")).unwrap(),
                std::fs::read(d.join("intermediate.crt")).unwrap(),
            ]
            .concat();
            std::fs::write(d.join("cas.crt"), cas).unwrap();
            openssl(
                d,
                &[
                    "pkcs12",
                    "-export",
                    "-in",
                    "leaf.crt",
                    "-inkey",
                    "leaf.key",
                    "-certfile",
                    "cas.crt",
                    "-passout",
                    "pass:",
                    "-out",
                    "leaf.pfx",
                ],
            );
            let bundle = pem_bundle(&base64_of(&d.join("leaf.pfx"))).unwrap();

            let pkcs8 = openssl(
                d,
                &[
                    "pkcs8", "-topk8", "-nocrypt", "-in", "leaf.key", "-outform", "DER",
                ],
            );
            let cert = |name: &str| {
                openssl(
                    d,
                    &["x509", "-in", &format!("{name}.crt"), "-outform", "DER"],
                )
            };
            let want = vec![
                ("PRIVATE KEY".to_owned(), pkcs8),
                ("CERTIFICATE".to_owned(), cert("leaf")),
                ("CERTIFICATE".to_owned(), cert("intermediate")),
                ("CERTIFICATE".to_owned(), cert("root")),
            ];
            assert_eq!(blocks(&bundle), want, "{key:?}");
            // And OpenSSL reads the file as a key and its chain.
            std::fs::write(d.join("bundle.pem"), bundle.as_bytes()).unwrap();
            openssl(d, &["pkey", "-in", "bundle.pem", "-noout"]);
            openssl(
                d,
                &[
                    "verify",
                    "-CAfile",
                    "root.crt",
                    "-untrusted",
                    "intermediate.crt",
                    "bundle.pem",
                ],
            );
        }
    }

    #[test]
    fn what_cannot_be_read_is_named_without_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        issue(
            d,
            "leaf",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            None,
        );
        let export = |extra: &[&str]| {
            let mut args = vec![
                "pkcs12", "-export", "-in", "leaf.crt", "-inkey", "leaf.key", "-out", "x.pfx",
            ];
            args.extend_from_slice(extra);
            openssl(d, &args);
            base64_of(&d.join("x.pfx"))
        };
        assert_eq!(
            pem_bundle(&export(&["-passout", "pass:not-empty"])),
            Err(Pkcs12Error::Mac)
        );
        assert_eq!(
            pem_bundle(&export(&["-passout", "pass:", "-nomac"])),
            Err(Pkcs12Error::NoMac)
        );
        // A key and no certificate: the provider finds no leaf either.
        assert_eq!(
            pem_bundle(&export(&["-passout", "pass:", "-nocerts"])),
            Err(Pkcs12Error::NoLeaf)
        );
        assert_eq!(pem_bundle("not base64!"), Err(Pkcs12Error::Base64));
        assert_eq!(
            pem_bundle("c2VjcmV0LXZhbHVl"),
            Err(Pkcs12Error::Malformed("PFX"))
        );
        // Cut short, or one bit flipped: never a panic, never the bytes.
        use base64::Engine;
        let (_, value, _) = fixture!("keyvault-rsa");
        let pfx = base64::engine::general_purpose::STANDARD
            .decode(value)
            .unwrap();
        for len in (0..pfx.len()).step_by(97) {
            let cut = base64::engine::general_purpose::STANDARD.encode(&pfx[..len]);
            assert!(pem_bundle(&cut).is_err());
        }
        for at in (0..pfx.len()).step_by(13) {
            let mut flipped = pfx.clone();
            flipped[at] ^= 0x10;
            let value = base64::engine::general_purpose::STANDARD.encode(&flipped);
            if let Err(e) = pem_bundle(&value) {
                let text = e.to_string();
                assert!(text.len() < 120 && !text.contains(&value[..16]), "{text}");
            }
        }
    }

    #[test]
    fn the_kdf_matches_rfc_7292_vectors() {
        // From OpenSSL's and Go's test vectors: password "smeg" (BMPString),
        // salt 0A58CF64530D823F, 1 iteration, ID 1, 24 bytes.
        let password: Vec<u8> = "smeg\0".encode_utf16().flat_map(u16::to_be_bytes).collect();
        let salt = [0x0a, 0x58, 0xcf, 0x64, 0x53, 0x0d, 0x82, 0x3f];
        let key = pkcs12_kdf(Hash::Sha1, 1, &salt, &password, 1, 24);
        assert_eq!(
            key.as_slice(),
            [
                0x8a, 0xaa, 0xe6, 0x29, 0x7b, 0x6c, 0xb0, 0x46, 0x42, 0xab, 0x5b, 0x07, 0x78, 0x51,
                0x28, 0x4e, 0xb7, 0x12, 0x8f, 0x1a, 0x2a, 0x7f, 0xbc, 0xa3
            ]
        );
    }

    #[test]
    fn oids_print_dotted() {
        assert_eq!(dotted(oid::PBES2), "1.2.840.113549.1.5.13");
        assert_eq!(dotted(oid::P384), "1.3.132.0.34");
        assert_eq!(dotted(oid::AES_256_CBC), "2.16.840.1.101.3.4.1.42");
    }
}
