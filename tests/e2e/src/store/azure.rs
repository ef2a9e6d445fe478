//! Azure Key Vault: the project's emulator (`tests/kv-emulator`), started by
//! `pods.sh` at the real host names' address (10.77.0.1: the vault, Entra
//! ID, and IMDS on 169.254.169.254), seeded with `db-user` and `db-pass`.
//! Values and faults go through its admin API, as `pods.sh`'s `admin` did.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::{env, store::Store};

const ADMIN: &str = "https://10.77.0.1/admin";

/// The identities `pods.sh` gives the emulator (`tests/e2e/pods-lib.sh`).
pub struct Azure {
    pub vault: String,
    pub tenant: String,
    /// The workload identity's client, federated with `default:default`.
    pub client: String,
    /// The service principal of the `nodePublishSecretRef` Secret.
    pub sp_client: String,
    pub sp_secret: String,
    ca: String,
}

impl Azure {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            vault: env("E2E_AZURE_VAULT")?,
            tenant: env("E2E_AZURE_TENANT")?,
            client: env("E2E_AZURE_CLIENT")?,
            sp_client: env("E2E_AZURE_SP_CLIENT")?,
            sp_secret: env("E2E_AZURE_SP_SECRET")?,
            ca: format!("{}/emulator-ca.pem", env("E2E_WORKDIR")?),
        })
    }

    /// One admin call: `method` on `path` with an optional JSON body; the
    /// reply's JSON (`null` when empty).
    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut curl = Command::new("curl");
        curl.args(["-fsS", "--cacert", &self.ca, "-X", method])
            .args(["-H", "Content-Type: application/json"])
            .arg(format!("{ADMIN}{path}"));
        if let Some(body) = body {
            curl.arg("-d").arg(body.to_string());
        }
        let out = curl.output().await.context("running curl")?;
        if !out.status.success() {
            bail!(
                "{method} {path}: {}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        if out.stdout.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out.stdout).with_context(|| format!("{method} {path}: not JSON"))
    }
}

impl Store for Azure {
    fn name(&self) -> &'static str {
        "azure"
    }

    /// A new version of the secret `object` (what a PodStatus records).
    async fn rotate(&self, object: &str, value: &str) -> anyhow::Result<String> {
        let path = format!("/vaults/{}/secrets/{object}", self.vault);
        let reply = self
            .admin("POST", &path, Some(json!({"value": value})))
            .await?;
        reply["version"]
            .as_str()
            .map(str::to_string)
            .context("the emulator's reply has no version")
    }

    async fn down(&mut self) -> anyhow::Result<()> {
        self.admin(
            "POST",
            "/faults",
            Some(json!({"target": "*", "fault": "down"})),
        )
        .await
        .map(drop)
    }

    async fn up(&mut self) -> anyhow::Result<()> {
        self.admin("DELETE", "/faults", None).await.map(drop)
    }

    fn outage_kind(&self) -> &'static str {
        // The emulator's `down` fault answers 503.
        "unavailable"
    }
}
