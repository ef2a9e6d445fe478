//! secret-injector's admission webhook: the mutation (pure), the admission
//! review around it, the HTTPS server, and the offline `inject` command.

pub mod accounts;
pub mod admission;
pub mod classes;
pub mod cli;
pub mod config;
pub mod inject;
pub mod managed_tls;
pub mod metrics;
pub mod mutate;
pub mod server;
pub mod stores;
pub mod tls;
pub mod tls_keeper;

pub use config::InjectorConfig;
