//! HashiCorp Vault / OpenBao references:
//! `vault://<mount>/<path>[?version=<n>][#<key>]`.
//!
//! The path is logical, mount first: the sidecar asks Vault which mount it
//! is under and, for a kv-v2 mount, reads `<mount>/data/<rest>` (version
//! `n` if asked). Any other engine's path is read as it is
//! (`vault://database/creds/app`). Without `#<key>` the file holds the
//! secret's data as JSON. `?api=true` marks a path that is already Vault's
//! API path (`secret/data/app`, as the Vault CSI provider's `secretPath`
//! and Vault Agent's templates write it), read without inserting `data/`.
//!
//! A write that issues (`pki/issue/<role>`): `?method=POST` (or `PUT`), the
//! other pairs being the request's arguments, as Vault Agent's
//! `secret "pki/issue/web" "common_name=app.example.com"` takes them:
//! `vault://pki/issue/web?method=POST&common_name=app.example.com&ttl=24h#certificate`.

use std::fmt;

use super::{ReferenceError, part, split_fragment};

const VAULT_FORM: &str = "vault://<mount>/<path>[?version=<n>][#<key>]";
/// Arguments of one write: what an issuing request takes, bounded.
const MAX_ARGS: usize = 32;
const MAX_ARG_VALUE: usize = 1024;
pub(crate) const ARG_NAME_RULE: &str =
    "an argument name of letters, digits and _, at most 64 bytes (version and api are reserved)";
pub(crate) const ARG_VALUE_RULE: &str =
    "an argument value of printable ASCII without spaces or &#?%, at most 1024 bytes";
pub(crate) const WRITE_PATH_RULE: &str = "a write only where an engine issues: <mount>/issue/<role>, <mount>/sign/<role>, <mount>/sign-verbatim[/<role>], <mount>/creds/<role> or <mount>/sts/<role>, never under sys/, auth/, identity/ or cubbyhole/";

/// Where a write issues something (PKI, SSH, database and AWS creds, STS)
/// rather than changes Vault (policies, auth, kv data, leases): the only
/// writes a pod may ask the sidecar to make, once per lease, not per poll.
pub fn is_issuing_path(path: &str) -> bool {
    let path = path.trim_start_matches('/');
    let path = path.strip_prefix("v1/").unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    let reserved = matches!(
        segments.first(),
        Some(&("sys" | "auth" | "identity" | "cubbyhole"))
    );
    let issuing = match segments.as_slice() {
        [.., mount, verb, role] if !mount.is_empty() && !role.is_empty() => {
            matches!(*verb, "issue" | "sign" | "sign-verbatim" | "creds" | "sts")
        }
        [.., mount, "sign-verbatim"] => !mount.is_empty(),
        _ => false,
    };
    !reserved && issuing
}

/// Vault's own limit on a path is far larger; this bounds what a pod may ask.
const MAX_PATH: usize = 512;
const MAX_KEY: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VaultRef {
    /// The path, mount first (`secret/app/db`).
    pub path: String,
    /// The field to write; `None` writes the secret's data as JSON.
    pub key: Option<String>,
    /// A kv-v2 version (`?version=<n>`); the latest without it.
    pub version: Option<u32>,
    /// The path is Vault's API path, read as it is (`?api=true`).
    pub api_path: bool,
    /// A write that issues (`?method=POST&<arg>=<value>...`); a read without it.
    pub write: Option<VaultWrite>,
}

/// A request that issues rather than reads: `pki/issue/<role>` with its
/// arguments (sent as the JSON body's strings, which Vault parses per field).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VaultWrite {
    /// `POST` or `PUT` (Vault treats both as an update).
    pub method: WriteMethod,
    pub args: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteMethod {
    Post,
    Put,
}

impl WriteMethod {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "POST" => Some(Self::Post),
            "PUT" => Some(Self::Put),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "POST",
            Self::Put => "PUT",
        }
    }
}

/// An issuing request's argument name (`common_name`, `ttl`).
pub fn is_arg_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "version"
        && name != "api"
        && name != "method"
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// An argument's value as a reference carries it, unencoded.
pub fn is_arg_value(value: &str) -> bool {
    value.len() <= MAX_ARG_VALUE
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"&#?%".contains(&b))
}

impl VaultRef {
    pub(crate) fn parse(rest: &str) -> Result<Self, ReferenceError> {
        let (location, key) = split_fragment(rest, "key")?;
        if let Some(key) = &key {
            check_key(key)?;
        }
        let (path, query) = match location.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (location, None),
        };
        let mut version = None;
        let mut api_path = false;
        let pairs: Vec<&str> = query.into_iter().flat_map(|q| q.split('&')).collect();
        let mut write = None;
        for pair in &pairs {
            if let Some(m) = pair.strip_prefix("method=") {
                if write.is_some() {
                    return Err(part(
                        "query",
                        pair,
                        "method=POST or method=PUT, at most once",
                    ));
                }
                let method = WriteMethod::parse(m).ok_or_else(|| {
                    part(
                        "method",
                        m,
                        "POST or PUT (a write that issues); a read needs no method",
                    )
                })?;
                write = Some(VaultWrite {
                    method,
                    args: Vec::new(),
                });
            }
        }
        for pair in pairs {
            if pair.starts_with("method=") {
                continue;
            }
            match pair.split_once('=') {
                Some(("version", n)) if version.is_none() => {
                    version = Some(n.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        part("version", n, "a kv-v2 version is a whole number from 1")
                    })?);
                }
                Some(("api", "true")) if !api_path => api_path = true,
                Some((name, value)) if write.is_some() && name != "api" && name != "version" => {
                    if !is_arg_name(name) {
                        return Err(part("argument", name, ARG_NAME_RULE));
                    }
                    if !is_arg_value(value) {
                        return Err(part("argument value", value, ARG_VALUE_RULE));
                    }
                    if let Some(w) = write.as_mut() {
                        if w.args.len() >= MAX_ARGS || w.args.iter().any(|(n, _)| n == name) {
                            return Err(part(
                                "argument",
                                name,
                                "each argument at most once, at most 32 of them",
                            ));
                        }
                        w.args.push((name.to_owned(), value.to_owned()));
                    }
                }
                _ => {
                    return Err(part(
                        "query",
                        pair,
                        "accepted: version=<n> and api=true, each at most once; with method=POST or PUT, <argument>=<value> pairs",
                    ));
                }
            }
        }
        if write.is_some() && version.is_some() {
            return Err(part(
                "query",
                "version",
                "a write that issues has no version: leave out version=<n> or method=",
            ));
        }
        check_path(path)?;
        if write.is_some() && !is_issuing_path(path) {
            return Err(part("write path", path, WRITE_PATH_RULE));
        }
        Ok(Self {
            path: path.to_owned(),
            key,
            version,
            api_path,
            write,
        })
    }

    /// The first segment: the mount, or the start of a longer one (the
    /// sidecar asks Vault where the mount ends).
    pub fn first_segment(&self) -> &str {
        self.path.split('/').next().unwrap_or_default()
    }
}

fn check_path(path: &str) -> Result<(), ReferenceError> {
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() < 2 {
        return Err(ReferenceError::Shape { form: VAULT_FORM });
    }
    let ok = path.len() <= MAX_PATH
        && segments.iter().all(|s| {
            !s.is_empty()
                && *s != "."
                && *s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.@+=:,".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(part(
            "Vault path",
            path,
            "a mount and a path of non-empty segments of letters, digits and -_.@+=:, (no '.' or '..', at most 512 bytes)",
        ))
    }
}

fn check_key(key: &str) -> Result<(), ReferenceError> {
    let ok = key.len() <= MAX_KEY
        && key
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"#?%\\/".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(part(
            "key",
            key,
            "a field name of printable ASCII without #?%\\/ or spaces, at most 256 bytes",
        ))
    }
}

impl fmt::Display for VaultRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vault://{}", self.path)?;
        let mut sep = '?';
        if let Some(v) = self.version {
            write!(f, "{sep}version={v}")?;
            sep = '&';
        }
        if let Some(w) = &self.write {
            write!(f, "{sep}method={}", w.method.as_str())?;
            sep = '&';
            for (name, value) in &w.args {
                write!(f, "&{name}={value}")?;
            }
        }
        if self.api_path {
            write!(f, "{sep}api=true")?;
        }
        if let Some(key) = &self.key {
            write!(f, "#{key}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::is_issuing_path;
    use crate::SecretRef;

    fn vault(s: &str) -> super::VaultRef {
        match s.parse::<SecretRef>() {
            Ok(SecretRef::Vault(r)) => r,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[rstest]
    #[case(
        "vault://secret/app/db#password",
        "secret/app/db",
        Some("password"),
        None,
        false
    )]
    #[case("vault://secret/app/db", "secret/app/db", None, None, false)]
    #[case(
        "vault://secret/app/db?version=3#user",
        "secret/app/db",
        Some("user"),
        Some(3),
        false
    )]
    #[case("vault://database/creds/app", "database/creds/app", None, None, false)]
    #[case(
        "vault://secret/data/db?api=true#k",
        "secret/data/db",
        Some("k"),
        None,
        true
    )]
    #[case(
        "vault://team/kv/app?version=1&api=true",
        "team/kv/app",
        None,
        Some(1),
        true
    )]
    fn parses_and_prints_back(
        #[case] text: &str,
        #[case] path: &str,
        #[case] key: Option<&str>,
        #[case] version: Option<u32>,
        #[case] api_path: bool,
    ) {
        let r = vault(text);
        assert_eq!(r.path, path);
        assert_eq!(r.key.as_deref(), key);
        assert_eq!(r.version, version);
        assert_eq!(r.api_path, api_path);
        assert_eq!(r.to_string(), text);
    }

    #[rstest]
    #[case("vault://secret#k", "does not have the form vault://")]
    #[case("vault://secret/../db#k", "Vault path")]
    #[case("vault://secret//db", "Vault path")]
    #[case("vault://secret/a b", "Vault path")]
    #[case("vault://secret/db?version=0", "version \"0\"")]
    #[case("vault://secret/db?version=x", "version \"x\"")]
    #[case("vault://secret/db?version=1&version=2", "at most once")]
    #[case("vault://secret/db?api=yes", "accepted: version=<n> and api=true")]
    #[case("vault://secret/db?list=true", "accepted")]
    #[case("vault://secret/db#a/b", "key \"a/b\"")]
    #[case("vault://secret/db#", "must not be empty")]
    fn refuses_saying_why(#[case] text: &str, #[case] says: &str) {
        let err = text.parse::<SecretRef>().unwrap_err().to_string();
        assert!(err.contains(says), "{text}: {err}");
    }

    #[rstest]
    #[case("vault://pki/issue/web?method=POST&common_name=app.example.com&ttl=24h#certificate")]
    #[case(
        "vault://pki/issue/web?method=PUT&common_name=a.example.com&alt_names=b.example.com,c.example.com&api=true"
    )]
    #[case("vault://pki/issue/web?method=POST")]
    fn writes_that_issue_print_back(#[case] text: &str) {
        let r = vault(text);
        assert!(r.write.is_some(), "{text}");
        assert_eq!(r.to_string(), text);
    }

    #[test]
    fn a_writes_arguments_in_order() {
        let r = vault("vault://pki/issue/web?common_name=x.example.com&method=post&ttl=10m");
        let w = r.write.unwrap();
        assert_eq!(w.method, super::WriteMethod::Post);
        assert_eq!(
            w.args,
            [
                ("common_name".into(), "x.example.com".into()),
                ("ttl".into(), "10m".into())
            ]
        );
    }

    #[rstest]
    #[case("vault://pki/issue/web?common_name=x", "accepted: version=<n>")]
    #[case("vault://pki/issue/web?method=GET", "POST or PUT")]
    #[case("vault://pki/issue/web?method=POST&method=PUT", "at most once")]
    #[case("vault://pki/issue/web?method=POST&version=2", "no version")]
    #[case("vault://pki/issue/web?method=POST&a-b=1", "argument name")]
    #[case("vault://pki/issue/web?method=POST&cn=a%20b", "argument value")]
    #[case("vault://pki/issue/web?method=POST&ttl=1&ttl=2", "at most once")]
    // Writes that change Vault rather than issue are refused.
    #[case("vault://sys/policy/p?method=PUT&policy=x", "write path")]
    #[case("vault://sys/leases/revoke?method=PUT&lease_id=x", "write path")]
    #[case("vault://auth/approle/role/r/secret-id?method=POST", "write path")]
    #[case("vault://kv/app?method=POST&password=x", "write path")]
    #[case("vault://secret/data/app?method=POST&x=1", "write path")]
    #[case("vault://secret/destroy/app?method=PUT&versions=1", "write path")]
    #[case("vault://sys/pki/issue/web?method=POST", "write path")]
    fn writes_refused_saying_why(#[case] text: &str, #[case] says: &str) {
        let err = text.parse::<SecretRef>().unwrap_err().to_string();
        assert!(err.contains(says), "{text}: {err}");
    }

    #[test]
    fn issuing_paths() {
        for ok in [
            "pki/issue/web",
            "pki_int/sign/web",
            "team/pki/issue/web",
            "ssh/sign/admin",
            "pki/sign-verbatim",
            "pki/sign-verbatim/web",
            "database/creds/app",
            "aws/sts/deploy",
            "v1/pki/issue/web",
        ] {
            assert!(is_issuing_path(ok), "{ok}");
        }
        for no in [
            "pki/issue",
            "issue/web",
            "sys/pki/issue/web",
            "secret/data/issue",
            "transit/decrypt/k",
        ] {
            assert!(!is_issuing_path(no), "{no}");
        }
    }

    #[test]
    fn a_path_is_bounded() {
        let long = format!("vault://secret/{}", "a".repeat(600));
        assert!(long.parse::<SecretRef>().is_err());
    }
}
