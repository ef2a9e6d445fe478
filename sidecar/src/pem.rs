//! PEM for what Key Vault returns as DER or JWK: a certificate (`cer`) and a
//! key's public half (SubjectPublicKeyInfo), as the CSI Azure provider writes them.

use base64::Engine;

/// Also used for private keys: the base64 body is wiped, and the output is
/// sized up front so no reallocation leaves a copy behind.
pub fn pem(label: &str, der: &[u8]) -> String {
    let body = zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut out = String::with_capacity(2 * label.len() + 32 + body.len() + body.len() / 64 + 1);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

pub fn certificate_pem(der: &[u8]) -> String {
    pem("CERTIFICATE", der)
}

/// The public key of an RSA JWK (`n`, `e` as big-endian bytes).
pub fn rsa_public_key_pem(n: &[u8], e: &[u8]) -> String {
    // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
    let rsa_key = tlv(0x30, &[integer(n), integer(e)].concat());
    // AlgorithmIdentifier: rsaEncryption (1.2.840.113549.1.1.1), NULL parameters.
    const RSA_ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    pem("PUBLIC KEY", &spki(RSA_ALGORITHM, &rsa_key))
}

/// The public key of an EC JWK; `None` for a curve we cannot name.
pub fn ec_public_key_pem(curve: &str, x: &[u8], y: &[u8]) -> Option<String> {
    // id-ecPublicKey (1.2.840.10045.2.1) and the named curve's OID.
    let curve_oid: &[u8] = match curve {
        "P-256" => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
        "P-384" => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
        "P-521" => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23],
        "P-256K" => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a],
        _ => return None,
    };
    let ec_oid: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    let algorithm = tlv(0x30, &[ec_oid, curve_oid].concat());
    let point = [&[0x04][..], x, y].concat();
    Some(pem("PUBLIC KEY", &spki(&algorithm, &point)))
}

/// SubjectPublicKeyInfo ::= SEQUENCE { algorithm, subjectPublicKey BIT STRING }
fn spki(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let bit_string = tlv(0x03, &[&[0x00][..], key].concat());
    tlv(0x30, &[algorithm, &bit_string].concat())
}

/// A positive INTEGER: leading zeros dropped, one added when the top bit is set.
fn integer(bytes: &[u8]) -> Vec<u8> {
    let trimmed = match bytes.iter().position(|b| *b != 0) {
        Some(i) => &bytes[i..],
        None => &[0u8][..],
    };
    let mut value = Vec::with_capacity(trimmed.len() + 1);
    if trimmed[0] & 0x80 != 0 {
        value.push(0);
    }
    value.extend_from_slice(trimmed);
    tlv(0x02, &value)
}

fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1024-bit modulus (parsing does not check primality).
    fn rsa_n() -> Vec<u8> {
        let mut n = vec![0xc5];
        n.extend(std::iter::repeat_n(0xab, 127));
        n
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn openssl_parses(pem_text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, pem_text).unwrap();
        let out = std::process::Command::new("openssl")
            .args([
                "pkey",
                "-pubin",
                "-in",
                path.to_str().unwrap(),
                "-noout",
                "-text",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn rsa_public_key_is_a_spki_openssl_reads() {
        let text = openssl_parses(&rsa_public_key_pem(&rsa_n(), &[0x01, 0x00, 0x01]));
        assert!(text.contains("Public-Key: (1024 bit)"), "{text}");
        assert!(text.contains("Exponent: 65537"), "{text}");
    }

    #[test]
    fn ec_public_key_is_a_spki_openssl_reads() {
        // The P-256 generator point: a valid public key.
        let x = hex("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296");
        let y = hex("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5");
        let text = openssl_parses(&ec_public_key_pem("P-256", &x, &y).unwrap());
        assert!(
            text.contains("prime256v1") || text.contains("P-256"),
            "{text}"
        );
        assert!(ec_public_key_pem("P-999", &x, &y).is_none());
    }

    #[test]
    fn long_lengths_use_the_long_form() {
        let v = vec![0u8; 300];
        let t = tlv(0x04, &v);
        assert_eq!(&t[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }
}
