//! AWS: moto (started by `pods.sh` on 127.0.0.1:5000 in the cluster's
//! namespace) behind `tests/moto/aws_front.py`, which this fixture runs at
//! the real host names' address (HTTPS, IRSA tokens checked against the
//! cluster's key, since moto checks none). boto3 (`tests/moto/fixture.py`)
//! writes the values.

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::{io::AsyncWriteExt, process::Command};

use crate::{cluster::repo, env, store::Store};

/// Where the cluster's DNS sends the AWS host names.
pub const FRONT: &str = "10.77.0.2:443";
pub const MOTO: &str = "http://127.0.0.1:5000";
pub const REGION: &str = "us-west-2";

pub struct Aws {
    python: PathBuf,
    workdir: PathBuf,
    front: Option<tokio::process::Child>,
}

impl Aws {
    /// The front started; moto must already run (`pods.sh`).
    pub async fn start() -> anyhow::Result<Self> {
        let mut aws = Self {
            python: PathBuf::from(env("E2E_MOTO_VENV")?).join("bin/python"),
            workdir: PathBuf::from(env("E2E_WORKDIR")?),
            front: None,
        };
        aws.up().await?;
        Ok(aws)
    }

    /// boto3 calls against moto (`tests/moto/fixture.py`'s JSON list); their replies.
    pub async fn calls(&self, calls: Value) -> anyhow::Result<Vec<Value>> {
        let mut child = Command::new(&self.python)
            .arg(repo().join("tests/moto/fixture.py"))
            .arg(MOTO)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running tests/moto/fixture.py")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(calls.to_string().as_bytes()).await?;
        }
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            bail!("fixture.py: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// The lines the front appends for each token it accepted:
    /// `<subject> <role>`.
    pub fn accepted(&self) -> String {
        std::fs::read_to_string(self.workdir.join("aws-accepted.log")).unwrap_or_default()
    }

    /// A `put_parameter` or `put_secret_value` call for `object`, by its
    /// name's service (this suite's fixtures name parameters `ParameterStore*`).
    fn rotation_call(object: &str, value: &str) -> Value {
        if object.starts_with("ParameterStore") {
            json!({"service": "ssm", "region": REGION, "op": "put_parameter",
                   "args": {"Name": object, "Value": value, "Type": "String", "Overwrite": true}})
        } else {
            json!({"service": "secretsmanager", "region": REGION, "op": "put_secret_value",
                   "args": {"SecretId": object, "SecretString": value}})
        }
    }
}

impl Store for Aws {
    fn name(&self) -> &'static str {
        "aws"
    }

    async fn rotate(&self, object: &str, value: &str) -> anyhow::Result<String> {
        let reply = self
            .calls(json!([Self::rotation_call(object, value)]))
            .await?;
        let reply = reply.first().context("no reply")?;
        // Secrets Manager's VersionId, Parameter Store's version number: the
        // ids the CSI provider's PodStatus carries.
        reply
            .get("VersionId")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| reply.get("Version").map(|v| v.to_string()))
            .context("a reply without a version")
    }

    async fn down(&mut self) -> anyhow::Result<()> {
        if let Some(mut front) = self.front.take() {
            front.kill().await?;
        }
        Ok(())
    }

    async fn up(&mut self) -> anyhow::Result<()> {
        let w = &self.workdir;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(w.join("aws-front.log"))?;
        let front = Command::new(&self.python)
            .arg(repo().join("tests/moto/aws_front.py"))
            .args(["--listen", FRONT, "--backend", "127.0.0.1:5000"])
            .arg("--cert")
            .arg(w.join("aws-front.pem"))
            .arg("--key")
            .arg(w.join("aws-front.key"))
            .arg("--sa-pub")
            .arg(env("SA_PUB")?)
            .arg("--accepted")
            .arg(w.join("aws-accepted.log"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting tests/moto/aws_front.py")?;
        self.front = Some(front);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if tokio::net::TcpStream::connect(FRONT).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the AWS front did not listen on {FRONT} within 10 s (see aws-front.log)")
    }

    fn outage_kind(&self) -> &'static str {
        // The front is gone, not failing: a refused connection.
        "connection"
    }
}
