//! Vault's answers, read without a network: a reply's value for one
//! reference, its version and lease, and its errors as the seam's kinds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use shared::VaultRef;

use crate::{
    lease::Lease,
    providers::{Detail, FetchError, Fetched},
    secret::SecretBytes,
};

/// A TTL beyond this (ten years) is read as this: no arithmetic on a
/// server's number may overflow.
pub const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A TTL in seconds as Vault gives it, bounded.
pub fn ttl(seconds: &Value) -> Duration {
    Duration::from_secs(seconds.as_u64().unwrap_or(0)).min(MAX_TTL)
}

/// Vault's `{"errors": [...]}` as one line.
fn errors_of(reply: &Value) -> String {
    let errors: Vec<&str> = reply["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if errors.is_empty() {
        "no error text".to_owned()
    } else {
        errors.join("; ")
    }
}

pub fn classify(status: StatusCode, reply: &Value, what: &str) -> FetchError {
    let detail = Detail::new(&format!("{what}: {} {}", status.as_u16(), errors_of(reply)));
    match status.as_u16() {
        400 => FetchError::Invalid(detail),
        401 => FetchError::Unauthorized(detail),
        403 => FetchError::Forbidden(detail),
        404 => FetchError::NotFound(detail),
        412 | 429 => FetchError::Throttled {
            retry_after: None,
            detail,
        },
        s if s >= 500 => FetchError::Unavailable(detail),
        _ => FetchError::Invalid(detail),
    }
}

/// A failed read; a kv-v2 latest version that was deleted or destroyed
/// says so (Vault answers 404 with the version's metadata).
pub fn read_error(status: StatusCode, reply: &Value, r: &VaultRef) -> FetchError {
    let metadata = &reply["data"]["metadata"];
    if status == StatusCode::NOT_FOUND && metadata.is_object() {
        let version = metadata["version"].as_u64().unwrap_or(0);
        if metadata["destroyed"] == true {
            return FetchError::NotFound(
                format!(
                    "{r}: version {version} was destroyed; write a new one or ask ?version=<n>"
                )
                .into(),
            );
        }
        if let Some(at) = metadata["deletion_time"].as_str().filter(|t| !t.is_empty()) {
            return FetchError::NotFound(
                format!(
                    "{r}: version {version} was deleted at {at}; undelete it or write a new one"
                )
                .into(),
            );
        }
    }
    classify(status, reply, &r.to_string())
}

/// What the store lent with this reply, if anything: a lease (dynamic
/// credentials; renewable or not), else a certificate's `expiration`. A
/// lease dies with the token that made it, so its term ends by `bound`.
pub fn lease_of(reply: &Value, now: SystemTime, bound: Option<SystemTime>) -> Option<Lease> {
    let id = reply["lease_id"].as_str().filter(|id| !id.is_empty());
    let duration = ttl(&reply["lease_duration"]);
    if let Some(id) = id
        && !duration.is_zero()
    {
        // An id this sidecar would not send back is a lease it can only
        // replace, never renew or revoke.
        let usable = is_lease_id(id);
        let renewable = usable && reply["renewable"].as_bool().unwrap_or(false);
        return Some(Lease::granted(
            usable.then(|| id.to_owned()),
            renewable,
            duration,
            now,
            bound,
        ));
    }
    // PKI without `generate_lease`: the certificate's end, in Unix seconds.
    // Only an issued certificate's: a kv field named `expiration` is data.
    let data = &reply["data"];
    if !(data["serial_number"].is_string() && data["certificate"].is_string()) {
        return None;
    }
    let expiration = data["expiration"].as_u64()?;
    let end = UNIX_EPOCH.checked_add(Duration::from_secs(expiration))?;
    let left = end.duration_since(now).unwrap_or_default().min(MAX_TTL);
    Some(Lease::granted(None, false, left, now, None))
}

/// A lease id as Vault makes them (`database/creds/app/AbC.123`), bounded.
pub fn is_lease_id(id: &str) -> bool {
    (1..=MAX_LEASE_ID).contains(&id.len())
        && !id.split('/').any(|part| part == ".." || part.is_empty())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
}

const MAX_LEASE_ID: usize = 512;

/// The file's bytes and version from a read's reply, for one reference.
pub fn value_of(r: &VaultRef, reply: &Value, kv2: bool) -> Result<Fetched, FetchError> {
    let data = &reply["data"];
    // What a key is looked up in: kv-v2's inner map, as the CSI provider
    // does for any reply that has one.
    let fields = match (&data["data"], kv2 || r.api_path) {
        (Value::Object(inner), true) => inner,
        _ => match data {
            Value::Object(map) => map,
            _ if kv2 => {
                return Err(FetchError::NotFound(
                    format!("{r}: the latest version has no data").into(),
                ));
            }
            _ => &Map::new(),
        },
    };
    let bytes = match &r.key {
        Some(key) => match fields.get(key) {
            Some(Value::String(s)) => s.as_bytes().to_vec(),
            Some(other) => serde_json::to_vec(other).unwrap_or_default(),
            None => {
                let keys: Vec<&str> = fields.keys().map(String::as_str).take(20).collect();
                return Err(FetchError::NotFound(
                    format!(
                        "{r}: the secret has no key {key:?} (keys: {})",
                        keys.join(", ")
                    )
                    .into(),
                ));
            }
        },
        None if r.api_path => whole_response(reply),
        None => serde_json::to_vec(fields).unwrap_or_default(),
    };
    Ok(Fetched::new(
        SecretBytes::new(bytes),
        version_of(reply, kv2 || r.api_path),
    ))
}

/// The PodStatus version: a kv-v2 secret's version number, a certificate's
/// serial number, a lease's id; else a digest of the reply's data (the
/// same for every key of one read, and it changes with any of them).
fn version_of(reply: &Value, versioned: bool) -> String {
    let data = &reply["data"];
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    data["metadata"]["version"]
        .as_u64()
        .filter(|_| versioned)
        .map(|v| v.to_string())
        .or_else(|| text(&data["serial_number"]).filter(|s| s.len() <= 128))
        // Not the lease id itself: versions reach Events and PodStatus,
        // which others may read, and an id is what renews or revokes it.
        .or_else(|| text(&reply["lease_id"]).map(|id| format!("lease-{}", digest(id.as_bytes()))))
        .unwrap_or_else(|| digest(&serde_json::to_vec(data).unwrap_or_default()))
}

/// The reply as the Vault CSI provider writes a file without `secretKey`
/// (Go's `json.Marshal` of its `api.Secret`: these fields, in this order).
fn whole_response(reply: &Value) -> Vec<u8> {
    let fields = [
        "request_id",
        "lease_id",
        "lease_duration",
        "renewable",
        "data",
        "warnings",
    ];
    let mut text = String::from("{");
    for (i, name) in fields.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        let value = reply.get(*name).cloned().unwrap_or(Value::Null);
        text.push_str(&format!("{}:{}", json!(name), value));
    }
    text.push('}');
    text.into_bytes()
}

/// A version for a value Vault gives none: the first 16 hex digits of its
/// SHA-256 (changes with the value, says nothing of it).
fn digest(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    d.as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use shared::SecretRef;

    use super::*;

    fn vault(s: &str) -> VaultRef {
        match s.parse::<SecretRef>() {
            Ok(SecretRef::Vault(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn text(f: &Fetched) -> String {
        String::from_utf8(f.value.expose().to_vec()).unwrap()
    }

    #[test]
    fn kv2_keys_data_and_versions() {
        let reply = json!({"lease_id": "", "data": {"data": {"user": "u", "n": 3, "o": {"a": [1]}},
                           "metadata": {"version": 7, "deletion_time": "", "destroyed": false}}});
        let f = value_of(&vault("vault://secret/db#user"), &reply, true).unwrap();
        assert_eq!((text(&f), f.version.as_str()), ("u".into(), "7"));
        let n = value_of(&vault("vault://secret/db#n"), &reply, true).unwrap();
        assert_eq!(text(&n), "3");
        let o = value_of(&vault("vault://secret/db#o"), &reply, true).unwrap();
        assert_eq!(text(&o), r#"{"a":[1]}"#);
        let all = value_of(&vault("vault://secret/db"), &reply, true).unwrap();
        assert_eq!(text(&all), r#"{"n":3,"o":{"a":[1]},"user":"u"}"#);
        let missing = value_of(&vault("vault://secret/db#pass"), &reply, true).unwrap_err();
        assert_eq!(missing.label(), "not_found");
        assert!(
            missing.to_string().contains("keys: n, o, user"),
            "{missing}"
        );
        assert!(
            !missing.to_string().contains("\"u\""),
            "no value in {missing}"
        );
        assert!(lease_of(&reply, SystemTime::now(), None).is_none());
    }

    #[test]
    fn kv1_versions_by_digest_dynamic_reads_by_lease() {
        let kv1 = json!({"lease_id": "", "lease_duration": 2764800, "data": {"k": "v", "l": "w"}});
        let f = value_of(&vault("vault://kv1/app#k"), &kv1, false).unwrap();
        assert_eq!(text(&f), "v");
        assert_eq!(f.version.len(), 16);
        let other_key = value_of(&vault("vault://kv1/app#l"), &kv1, false).unwrap();
        assert_eq!(f.version, other_key.version, "one version per read");
        let changed = json!({"data": {"k": "v", "l": "x"}});
        let after = value_of(&vault("vault://kv1/app#k"), &changed, false).unwrap();
        assert_ne!(f.version, after.version, "any change of the secret");
        // kv-v1's lease_duration is a hint without an id: nothing lent.
        assert!(lease_of(&kv1, SystemTime::now(), None).is_none());
        let db = json!({"lease_id": "database/creds/app/abc", "lease_duration": 120,
                        "renewable": true, "data": {"username": "v-u", "password": "p"}});
        let f = value_of(&vault("vault://database/creds/app#username"), &db, false).unwrap();
        assert_eq!(text(&f), "v-u");
        assert!(
            f.version.starts_with("lease-") && !f.version.contains("abc"),
            "{}",
            f.version
        );
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let lease = lease_of(&db, now, Some(now + Duration::from_secs(60))).unwrap();
        assert_eq!(lease.id.as_deref(), Some("database/creds/app/abc"));
        assert!(lease.renewable);
        assert_eq!(
            lease.until,
            now + Duration::from_secs(60),
            "bound by the token"
        );
    }

    #[test]
    fn certificates_version_by_serial_and_end_at_their_expiration() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let issued = json!({"lease_id": "", "lease_duration": 0, "data": {
            "certificate": "-----BEGIN CERTIFICATE-----", "serial_number": "3a:0f",
            "expiration": 1_000_600}});
        // A kv secret with a field named expiration lends nothing.
        let kv = json!({"data": {"expiration": 5, "password": "p"}});
        assert!(lease_of(&kv, now, None).is_none());
        let f = value_of(&vault("vault://pki/issue/web#certificate"), &issued, false).unwrap();
        assert_eq!(f.version, "3a:0f");
        let lease = lease_of(&issued, now, None).unwrap();
        assert_eq!((lease.id, lease.renewable), (None, false));
        assert_eq!(lease.until, now + Duration::from_secs(600));
        // generate_lease=true: a lease that cannot be renewed.
        let leased = json!({"lease_id": "pki/issue/web/x", "lease_duration": 600,
                            "renewable": false, "data": {"serial_number": "3a:10", "certificate": "c"}});
        let lease = lease_of(&leased, now, None).unwrap();
        assert!(!lease.renewable && lease.id.is_some());
        // A server's absurd numbers are bounded, never an overflow.
        let huge = json!({"lease_id": "x", "lease_duration": u64::MAX, "data": {}});
        assert_eq!(lease_of(&huge, now, None).unwrap().term(), MAX_TTL);
        let past = json!({"data": {"expiration": 5, "serial_number": "1", "certificate": "c"}});
        // An id this sidecar would not send back: replaced, never renewed.
        for odd in ["a/../sys/x", "a b", &"x".repeat(600)] {
            let reply = json!({"lease_id": odd, "lease_duration": 60, "renewable": true});
            let lease = lease_of(&reply, now, None).unwrap();
            assert_eq!((lease.id, lease.renewable), (None, false), "{odd}");
        }
        assert_eq!(lease_of(&past, now, None).unwrap().term(), Duration::ZERO);
    }

    #[test]
    fn the_csi_providers_reading_of_secret_path() {
        let reply = json!({"request_id": "r1", "lease_id": "", "lease_duration": 0, "renewable": false,
                           "data": {"data": {"bar1": "x"}, "metadata": {"version": 2}}, "warnings": null,
                           "mount_type": "kv"});
        let f = value_of(
            &vault("vault://secret/data/kv1?api=true#bar1"),
            &reply,
            false,
        )
        .unwrap();
        assert_eq!((text(&f), f.version.as_str()), ("x".into(), "2"));
        let whole = value_of(&vault("vault://secret/data/kv1?api=true"), &reply, false).unwrap();
        assert_eq!(
            text(&whole),
            r#"{"request_id":"r1","lease_id":"","lease_duration":0,"renewable":false,"data":{"data":{"bar1":"x"},"metadata":{"version":2}},"warnings":null}"#
        );
        // kv-v1 through the API path: the key in `data`.
        let v1 = json!({"data": {"bar1": "y"}});
        let f = value_of(&vault("vault://kv/app?api=true#bar1"), &v1, false).unwrap();
        assert_eq!(text(&f), "y");
    }

    #[test]
    fn deleted_and_destroyed_latest_versions_say_so() {
        let deleted = json!({"data": {"data": null, "metadata": {"version": 3,
            "deletion_time": "2026-12-03T10:00:00Z", "destroyed": false}}});
        let e = read_error(
            StatusCode::NOT_FOUND,
            &deleted,
            &vault("vault://secret/db#k"),
        );
        assert!(
            e.to_string()
                .contains("version 3 was deleted at 2026-12-03T10:00:00Z"),
            "{e}"
        );
        let destroyed = json!({"data": {"data": null, "metadata": {"version": 4,
            "deletion_time": "", "destroyed": true}}});
        let e = read_error(
            StatusCode::NOT_FOUND,
            &destroyed,
            &vault("vault://secret/db#k"),
        );
        assert!(e.to_string().contains("version 4 was destroyed"), "{e}");
        let plain = read_error(
            StatusCode::NOT_FOUND,
            &json!({"errors": []}),
            &vault("vault://secret/x#k"),
        );
        assert_eq!(plain.label(), "not_found");
    }

    #[test]
    fn statuses_map_to_kinds() {
        let denied = json!({"errors": ["permission denied"]});
        for (status, kind) in [
            (400, "invalid"),
            (403, "forbidden"),
            (404, "not_found"),
            (429, "throttled"),
            (503, "unavailable"),
        ] {
            let e = classify(StatusCode::from_u16(status).unwrap(), &denied, "x");
            assert_eq!(e.label(), kind, "{status}");
        }
        assert!(
            classify(StatusCode::FORBIDDEN, &denied, "x")
                .to_string()
                .contains("permission denied")
        );
    }
}
