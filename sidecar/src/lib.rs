//! secret-injector's sidecar: fetch secrets from the store into files,
//! atomically, and keep them rotated. Decisions are pure (`plan`), effects thin.

pub mod cli;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod kube_sink;
pub mod lease;
pub mod metrics;
pub mod pem;
pub mod plan;
pub mod providers;
pub mod secret;
pub mod status;
pub mod text;
pub mod transform;
pub mod writer;
