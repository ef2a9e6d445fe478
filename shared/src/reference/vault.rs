//! HashiCorp Vault / OpenBao references: `vault://<mount>/<path>#<key>`.

use std::fmt;

use super::{ReferenceError, part, split_fragment};

const VAULT_FORM: &str = "vault://<mount>/<path>#<key>";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VaultRef {
    pub mount: String,
    pub path: String,
    pub key: String,
}

impl VaultRef {
    pub(crate) fn parse(rest: &str) -> Result<Self, ReferenceError> {
        let (location, key) = split_fragment(rest, "key")?;
        let key = key.ok_or_else(|| {
            part(
                "key",
                "",
                "a Vault reference names the field to write after '#', as in vault://secret/app/db#password",
            )
        })?;
        let (mount, path) = location
            .split_once('/')
            .ok_or(ReferenceError::Shape { form: VAULT_FORM })?;
        for segment in std::iter::once(mount).chain(path.split('/')) {
            let ok = !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"#?%\\".contains(&b));
            if !ok {
                return Err(part(
                    "Vault path",
                    location,
                    "a mount and a path of non-empty segments, without '.', '..', '?', '%' or spaces",
                ));
            }
        }
        Ok(Self {
            mount: mount.to_owned(),
            path: path.to_owned(),
            key,
        })
    }
}

impl fmt::Display for VaultRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vault://{}/{}#{}", self.mount, self.path, self.key)
    }
}
