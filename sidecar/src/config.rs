//! Configuration from the environment the webhook injects, read through a
//! map so tests pass a `HashMap` instead of mutating the process environment.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf};

use shared::{Injection, SPEC_ENV, SpecError};

pub trait EnvSource {
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

impl EnvSource for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned().filter(|v| !v.is_empty())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{SPEC_ENV} is not set: this container is configured by the secret-injector webhook")]
    NoSpec,
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("cannot read the CA bundle {path}: {source}")]
    CaBundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--resolve {0:?}: use host=ip:port, for example kv.vault.azure.net=10.0.0.5:443")]
    Resolve(String),
}

/// The pod's sets of files, one per volume.
pub fn injection(env: &impl EnvSource) -> Result<Injection, ConfigError> {
    let value = env.get(SPEC_ENV).ok_or(ConfigError::NoSpec)?;
    Ok(Injection::from_env_value(&value)?)
}

/// `host=ip:port` pairs, like curl's `--resolve`.
pub fn parse_resolve(entries: &[String]) -> Result<Vec<(String, SocketAddr)>, ConfigError> {
    entries
        .iter()
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let (host, addr) = entry
                .split_once('=')
                .ok_or_else(|| ConfigError::Resolve(entry.clone()))?;
            let addr = addr
                .parse()
                .map_err(|_| ConfigError::Resolve(entry.clone()))?;
            Ok((host.to_owned(), addr))
        })
        .collect()
}

/// The `--ca-bundle` file's bytes, for every store's client.
pub fn ca_bundle(path: Option<&PathBuf>) -> Result<Option<Vec<u8>>, ConfigError> {
    path.map(|path| {
        std::fs::read(path).map_err(|source| ConfigError::CaBundle {
            path: path.clone(),
            source,
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn resolve_entries() {
        let r = parse_resolve(&["kv.vault.azure.net=127.0.0.1:8443".into()]).unwrap();
        assert_eq!(r[0].0, "kv.vault.azure.net");
        assert_eq!(r[0].1.port(), 8443);
        assert!(parse_resolve(&["nohost".into()]).is_err());
    }

    #[test]
    fn no_spec_says_who_configures_it() {
        let err = super::injection(&env(&[])).unwrap_err().to_string();
        assert!(
            err.contains("configured by the secret-injector webhook"),
            "{err}"
        );
    }
}
