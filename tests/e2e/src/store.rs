//! A store's fixture, as the shared checks ([`crate::suite`]) drive it: one
//! module per store, each starting what it needs beside what `pods.sh`
//! already runs, and writing values the way the store's own tools do.

pub mod aws;
pub mod azure;
pub mod vault;

/// What the shared checks ask of a store's fixture.
pub trait Store {
    /// How check lines name the store ("aws").
    fn name(&self) -> &'static str;
    /// Gives `object` the new `value` as the store's own API would; the
    /// version the store now reports for it (what a PodStatus records).
    fn rotate(
        &self,
        object: &str,
        value: &str,
    ) -> impl std::future::Future<Output = anyhow::Result<String>>;
    /// Makes the store unreachable for the pods.
    fn down(&mut self) -> impl std::future::Future<Output = anyhow::Result<()>>;
    /// Brings it back.
    fn up(&mut self) -> impl std::future::Future<Output = anyhow::Result<()>>;
    /// The status file's `errorKind` while it is down.
    fn outage_kind(&self) -> &'static str;
}
