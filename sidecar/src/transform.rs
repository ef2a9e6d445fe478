//! From the store's value to the file's bytes: JSON field extraction and
//! decoding (utf-8, hex, base64), as the CSI Azure provider does.

use base64::Engine;
use shared::{JsonPath, JsonPathStep, ObjectEncoding, SecretObject};
use zeroize::{Zeroize, Zeroizing};

use crate::{providers::FetchError, secret::SecretBytes};

/// A value parsed from a secret: its strings (keys included) are wiped when
/// it is dropped. Numbers, booleans and null hold no heap memory here
/// (serde_json's `arbitrary_precision` is off). What serde_json's parser
/// allocated and freed while parsing is not reached (see `secret`).
struct WipedJson(serde_json::Value);

impl Drop for WipedJson {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

fn wipe(value: &mut serde_json::Value) {
    use serde_json::Value;
    match std::mem::take(value) {
        Value::String(mut s) => s.zeroize(),
        Value::Array(items) => {
            for mut item in items {
                wipe(&mut item);
            }
        }
        Value::Object(map) => {
            for (mut key, mut item) in map {
                key.zeroize();
                wipe(&mut item);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Base64 into a buffer sized up front (no reallocation leaves a copy) and
/// wiped, whole capacity, if decoding fails half way.
fn decode_base64(text: &[u8]) -> Option<SecretBytes> {
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() / 4 * 3 + 3));
    base64::engine::general_purpose::STANDARD
        .decode_vec(text, &mut out)
        .ok()?;
    Some(SecretBytes::new(std::mem::take(&mut *out)))
}

pub fn to_file_bytes(
    object: &SecretObject,
    value: &SecretBytes,
) -> Result<SecretBytes, FetchError> {
    let json_key = object.source.json_key().or(object.json_key.as_deref());
    let extracted;
    let value = match (json_key, &object.json_path) {
        (None, None) if object.yaml_key.is_some() => {
            extracted = extract_yaml_key(value, object.yaml_key.as_deref().unwrap_or_default())?;
            &extracted
        }
        (Some(key), _) => {
            extracted = extract_json_key(value, key)?;
            &extracted
        }
        (None, Some(path)) => {
            extracted = extract_json_path(value, path)?;
            &extracted
        }
        (None, None) => value,
    };
    decode(value, object.encoding.unwrap_or(ObjectEncoding::Utf8))
}

/// The JSON string `path` selects, as the AWS CSI provider's `jmesPath`
/// writes it: anything else (a number, an object, nothing) is an error that
/// names the path, never the value.
fn extract_json_path(value: &SecretBytes, path: &JsonPath) -> Result<SecretBytes, FetchError> {
    let mut parsed = WipedJson(serde_json::from_slice(value.expose()).map_err(|_| {
        FetchError::Invalid(
            format!(
                "the value is not JSON, so jmesPath {:?} cannot be read from it",
                path.as_str()
            )
            .into(),
        )
    })?);
    let mut node = &mut parsed.0;
    for step in path.steps() {
        let next = match step {
            JsonPathStep::Field(name) => node.as_object_mut().and_then(|m| m.get_mut(name)),
            JsonPathStep::Index(i) => node.as_array_mut().and_then(|a| a.get_mut(*i)),
        };
        node = next.ok_or_else(|| {
            FetchError::Invalid(
                format!("jmesPath {:?} does not point to a value", path.as_str()).into(),
            )
        })?;
    }
    match node {
        // Moved out, not copied.
        serde_json::Value::String(s) => Ok(SecretBytes::from(std::mem::take(s))),
        _ => Err(FetchError::Invalid(
            format!(
                "jmesPath {:?} selects a value that is not a string; only strings are written",
                path.as_str()
            )
            .into(),
        )),
    }
}

fn extract_json_key(value: &SecretBytes, key: &str) -> Result<SecretBytes, FetchError> {
    // Errors never quote the value: it is the secret.
    let mut parsed = WipedJson(serde_json::from_slice(value.expose()).map_err(|_| {
        FetchError::Invalid(
            format!("the value is not a JSON object, so key {key:?} cannot be read from it").into(),
        )
    })?);
    let mut field = parsed
        .0
        .as_object_mut()
        .ok_or_else(|| {
            FetchError::Invalid(
                format!(
                    "the value is JSON but not an object, so key {key:?} cannot be read from it"
                )
                .into(),
            )
        })?
        .remove(key)
        .ok_or_else(|| FetchError::Invalid(format!("the JSON value has no key {key:?}").into()))?;
    Ok(match &mut field {
        // Moved out, not copied.
        serde_json::Value::String(s) => SecretBytes::from(std::mem::take(s)),
        other => {
            let text = SecretBytes::from(other.to_string());
            wipe(other);
            text
        }
    })
}

/// One top-level string of a YAML mapping, as the GCP CSI provider's
/// `extractYAMLKey` reads it: anything but a string is an error that names
/// the key, never the value.
fn extract_yaml_key(value: &SecretBytes, key: &str) -> Result<SecretBytes, FetchError> {
    let not_yaml = || {
        FetchError::Invalid(
            format!("the value is not a YAML mapping, so key {key:?} cannot be read from it")
                .into(),
        )
    };
    // Bounded: the store's payload (Secret Manager: 64 KiB), and
    // serde_yaml_ng's own limits on recursion and alias repetition.
    let text = std::str::from_utf8(value.expose()).map_err(|_| not_yaml())?;
    let mut parsed: serde_yaml_ng::Mapping =
        serde_yaml_ng::from_str(text).map_err(|_| not_yaml())?;
    let field = parsed
        .remove(key)
        .ok_or_else(|| FetchError::Invalid(format!("the YAML value has no key {key:?}").into()))?;
    let result = match field {
        serde_yaml_ng::Value::String(s) => Ok(SecretBytes::from(s)),
        _ => Err(FetchError::Invalid(
            format!("the YAML value's key {key:?} is not a string").into(),
        )),
    };
    // The rest of the mapping held secrets too; serde_yaml_ng's values
    // cannot be wiped in place, so they are at least dropped at once.
    drop(parsed);
    result
}

fn decode(value: &SecretBytes, encoding: ObjectEncoding) -> Result<SecretBytes, FetchError> {
    // Encoded values are often stored wrapped; whitespace is never a digit.
    let text = || -> SecretBytes {
        SecretBytes::new(
            value
                .expose()
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect(),
        )
    };
    match encoding {
        ObjectEncoding::Utf8 => Ok(value.clone()),
        ObjectEncoding::Base64 => decode_base64(text().expose()).ok_or_else(|| {
            FetchError::Invalid("objectEncoding is base64 but the value is not valid base64".into())
        }),
        ObjectEncoding::Hex => {
            let text = text();
            if !text.len().is_multiple_of(2) {
                return Err(FetchError::Invalid(
                    "objectEncoding is hex but the value has an odd number of digits".into(),
                ));
            }
            // Sized up front and wiped if a digit is bad half way.
            let mut out = Zeroizing::new(Vec::with_capacity(text.len() / 2));
            for pair in text.expose().chunks(2) {
                let digit = |b: u8| (b as char).to_digit(16);
                match (digit(pair[0]), digit(pair[1])) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => {
                        return Err(FetchError::Invalid(
                            "objectEncoding is hex but the value has a non-hex character".into(),
                        ));
                    }
                }
            }
            Ok(SecretBytes::new(std::mem::take(&mut *out)))
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use shared::FileName;

    use super::*;

    fn object(uri: &str) -> SecretObject {
        SecretObject::new(FileName::new("f").unwrap(), uri.parse().unwrap())
    }

    fn bytes(s: &str) -> SecretBytes {
        SecretBytes::from(s.to_owned())
    }

    #[test]
    fn yaml_keys_as_the_gcp_provider_reads_them() {
        let mut o = object("gcp://projects/my-project/secrets/app");
        o.yaml_key = Some("password".into());
        let doc = bytes("user: admin\npassword: \"s3:cr&t\"\nport: 5432\n");
        assert_eq!(to_file_bytes(&o, &doc).unwrap().expose(), b"s3:cr&t");
        o.yaml_key = Some("port".into());
        let e = to_file_bytes(&o, &doc).unwrap_err().to_string();
        assert!(e.contains("not a string") && !e.contains("5432"), "{e}");
        o.yaml_key = Some("missing".into());
        let e = to_file_bytes(&o, &doc).unwrap_err().to_string();
        assert!(e.contains("no key") && !e.contains("admin"), "{e}");
        let e = to_file_bytes(&o, &bytes("- a list\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a YAML mapping"), "{e}");
        // A reference's own #key is a JSON key, and wins.
        let mut j = object("gcp://projects/my-project/secrets/app#user");
        j.yaml_key = None;
        assert_eq!(
            to_file_bytes(&j, &bytes(r#"{"user":"u"}"#))
                .unwrap()
                .expose(),
            b"u"
        );
    }

    #[rstest]
    #[case(ObjectEncoding::Utf8, "plain", b"plain".to_vec())]
    #[case(ObjectEncoding::Base64, "aGVsbG8=", b"hello".to_vec())]
    #[case(ObjectEncoding::Base64, "aGVs\nbG8=\n", b"hello".to_vec())]
    #[case(ObjectEncoding::Hex, "68656C6c6f", b"hello".to_vec())]
    #[case(ObjectEncoding::Hex, "00ff", vec![0, 255])]
    fn decodes(#[case] encoding: ObjectEncoding, #[case] stored: &str, #[case] expected: Vec<u8>) {
        let mut o = object("azure://kv-one/secrets/a");
        o.encoding = Some(encoding);
        assert_eq!(
            to_file_bytes(&o, &bytes(stored)).unwrap().expose(),
            expected.as_slice()
        );
    }

    #[rstest]
    #[case(ObjectEncoding::Base64, "not base64!")]
    #[case(ObjectEncoding::Hex, "abc")]
    #[case(ObjectEncoding::Hex, "zz")]
    fn bad_encodings_are_invalid_and_do_not_quote_the_value(
        #[case] encoding: ObjectEncoding,
        #[case] stored: &str,
    ) {
        let mut o = object("azure://kv-one/secrets/a");
        o.encoding = Some(encoding);
        let err = to_file_bytes(&o, &bytes(stored)).unwrap_err();
        assert_eq!(err.label(), "invalid");
        assert!(!err.to_string().contains(stored), "{err}");
    }

    #[test]
    fn json_keys_from_the_aws_fragment_or_the_object() {
        let value = bytes(r#"{"username":"admin","port":5432}"#);
        let aws = object("aws://us-east-1/db#username");
        assert_eq!(to_file_bytes(&aws, &value).unwrap().expose(), b"admin");
        let mut azure = object("azure://kv-one/secrets/db");
        azure.json_key = Some("port".into());
        assert_eq!(to_file_bytes(&azure, &value).unwrap().expose(), b"5432");
        azure.json_key = Some("password".into());
        let err = to_file_bytes(&azure, &value).unwrap_err().to_string();
        assert!(err.contains("no key \"password\""), "{err}");
        assert!(!err.contains("admin"), "{err}");
    }

    #[test]
    fn json_paths_write_strings_only_as_the_aws_provider_does() {
        let value = bytes(r#"{"username":"admin","db":{"hosts":["a","b"],"port":5432}}"#);
        let mut o = object("aws://us-east-1/db");
        let with = |o: &mut SecretObject, p: &str| o.json_path = Some(JsonPath::parse(p).unwrap());
        with(&mut o, "username");
        assert_eq!(to_file_bytes(&o, &value).unwrap().expose(), b"admin");
        with(&mut o, "db.hosts[1]");
        assert_eq!(to_file_bytes(&o, &value).unwrap().expose(), b"b");
        for (path, says) in [
            ("db.port", "not a string"),
            ("db", "not a string"),
            ("db.hosts[2]", "does not point"),
            ("password", "does not point"),
        ] {
            with(&mut o, path);
            let err = to_file_bytes(&o, &value).unwrap_err();
            assert_eq!(err.label(), "invalid");
            assert!(err.to_string().contains(says), "{path}: {err}");
            assert!(!err.to_string().contains("admin"), "{err}");
        }
        let err = to_file_bytes(&o, &bytes("s3cr3t")).unwrap_err().to_string();
        assert!(err.contains("not JSON") && !err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn json_values_are_wiped_when_dropped() {
        let mut value: serde_json::Value =
            serde_json::from_str(r#"{"k":"secret","n":[{"deep":"also"}],"x":1}"#).unwrap();
        wipe(&mut value);
        assert_eq!(value, serde_json::Value::Null);
        let nested = bytes(r#"{"outer":{"inner":"v"},"list":[1,"two"]}"#);
        let mut o = object("azure://kv-one/secrets/db");
        o.json_key = Some("outer".into());
        assert_eq!(
            to_file_bytes(&o, &nested).unwrap().expose(),
            br#"{"inner":"v"}"#
        );
    }

    #[test]
    fn a_json_key_on_a_non_json_value_says_so_without_the_value() {
        let mut o = object("azure://kv-one/secrets/db");
        o.json_key = Some("k".into());
        let err = to_file_bytes(&o, &bytes("s3cr3t")).unwrap_err().to_string();
        assert!(err.contains("not a JSON object"), "{err}");
        assert!(!err.contains("s3cr3t"));
    }
}
