//! Secret bytes: never printed, zeroed when dropped.
//!
//! Zeroisation (L3) is best effort. The sidecar's own copies are wiped when
//! dropped: `SecretBytes` (every value from the store to the file), the value
//! moved (not cloned) out of the SDK's secret model in `azure`, the client
//! secret (`AzureAuth::ClientSecret`, a `Zeroizing<String>`), base64 and hex
//! decoding buffers and the parsed JSON in `transform`, PEM bodies in `pem`
//! (a private key's included), and the synced Secrets' data in `kube_sink`,
//! built, returned by the apiserver or read to check ownership
//! (`cluster::WipedSecret`).
//!
//! What cannot be reached, and stays in freed memory until reused:
//! - the Azure SDK's internals: the HTTP response body it parses the value
//!   from, its JSON parser's buffers, the client secret inside
//!   `azure_core::credentials::Secret` (a plain `Cow<str>`), the access
//!   tokens it caches, and reqwest/hyper/rustls buffers;
//! - kube's request and response bodies: a synced Secret is serialised
//!   (base64 by k8s-openapi) into a body we never own, and the apiserver's
//!   answer is read into one before it is parsed;
//! - serde_json's scratch buffers while parsing a JSON value, and the
//!   process environment (`AZURE_CLIENT_SECRET` as the container got it).
//!
//! That is acceptable here: the same values sit as plain files in the pod's
//! memory-backed volume (tmpfs) for as long as the pod runs, readable by the
//! app by design. Wiping narrows how long a copy lingers in the sidecar's
//! heap (and what a memory dump of it would show); it is not a boundary.

use std::fmt;

use zeroize::Zeroize;

#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretBytes {
    fn from(value: String) -> Self {
        Self(value.into_bytes())
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(value: Vec<u8>) -> Self {
        Self(value)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([redacted; {} bytes])", self.0.len())
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = SecretBytes::from("hunter2".to_owned());
        assert_eq!(format!("{s:?}"), "SecretBytes([redacted; 7 bytes])");
    }
}
