"""Starts target/debug/kv-emulator on a free loopback port for the session.

The SDK clients get the emulator's test CA through ``connection_verify``;
everything stays on 127.0.0.1.
"""

import base64
import json
import os
import pathlib
import queue
import subprocess
import threading
import time

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ROOT = pathlib.Path(__file__).resolve().parents[3]
TENANT = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
CLIENT_ID = "11111111-1111-4111-8111-111111111111"
CLIENT_SECRET = "emulator-client-secret"
WI_CLIENT_ID = "22222222-2222-4222-8222-222222222222"
WI_SUBJECT = "system:serviceaccount:apps:web"
MI_CLIENT_ID = "33333333-3333-4333-8333-333333333333"
IDENTITY_HEADER = "emulator-identity-header"
DEFAULT_VAULT = "kv-aks-csi-weu-01"
FEDERATION_AUDIENCE = "api://AzureADTokenExchange"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(private_key, claims: dict) -> str:
    """RS256 JWT, shaped like a kubelet-minted service-account token."""
    header = {"alg": "RS256", "typ": "JWT", "kid": "test-key"}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    sig = private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64url(sig)


def sa_claims(sub: str = WI_SUBJECT, aud=None, lifetime: int = 3600) -> dict:
    now = int(time.time())
    return {
        "aud": aud if aud is not None else [FEDERATION_AUDIENCE],
        "exp": now + lifetime,
        "iat": now - 5,
        "nbf": now - 5,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": sub,
        "kubernetes.io": {"namespace": "apps", "serviceaccount": {"name": "web"}},
    }


class Emulator:
    def __init__(self, url: str, ca: str, trusted_key, tmp: pathlib.Path):
        self.url = url
        self.ca = ca
        self.trusted_key = trusted_key
        self.tmp = tmp
        self.tenant = TENANT
        self.vault = DEFAULT_VAULT
        self.http = requests.Session()

    def admin(self, method: str, path: str, body=None):
        # verify= per request: a session's verify loses to REQUESTS_CA_BUNDLE.
        r = self.http.request(method, f"{self.url}/admin{path}", json=body, timeout=30, verify=self.ca)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content and r.headers.get("content-type", "").startswith("application/json") else None

    def set_secret(self, name: str, value: str, **extra) -> str:
        return self.admin("POST", f"/vaults/{self.vault}/secrets/{name}", {"value": value, **extra})["version"]

    def counters(self):
        return self.admin("GET", "/counters")

    def fetches(self, path: str, status: int = 200) -> int:
        return sum(
            c["count"]
            for c in self.counters()
            if c["target"] == self.vault and c["method"] == "GET" and c["path"] == path and c["status"] == status
        )

    def kwargs(self) -> dict:
        return {"connection_verify": self.ca}


def _read_line(stream, q):
    q.put(stream.readline())


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    binary = os.environ.get("KV_EMULATOR_BIN", str(ROOT / "target" / "debug" / "kv-emulator"))
    assert os.path.exists(binary), f"{binary} missing: run tests/kv-emulator/python/run.sh"
    tmp = tmp_path_factory.mktemp("kv-emulator")
    trusted = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = tmp / "sa.pub"
    pub.write_bytes(
        trusted.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    ca = tmp / "ca.pem"
    log = open(tmp / "emulator.log", "wb")
    proc = subprocess.Popen(
        [
            binary,
            "--listen", "127.0.0.1:0",
            "--ca-out", str(ca),
            "--default-vault", DEFAULT_VAULT,
            "--tenant", TENANT,
            "--client-secret", f"{CLIENT_ID}={CLIENT_SECRET}",
            "--federated-key", str(pub),
            "--federated-subject", f"{WI_CLIENT_ID}={WI_SUBJECT}",
            "--identity-header", IDENTITY_HEADER,
            "--seed", f"{DEFAULT_VAULT}/seeded=from-the-command-line",
            "--extra-name", "*.vault.azure.net",
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )
    q: queue.Queue = queue.Queue()
    threading.Thread(target=_read_line, args=(proc.stdout, q), daemon=True).start()
    try:
        line = q.get(timeout=60).decode().strip()
        assert line.startswith("listening on https://"), f"unexpected first line {line!r}"
        yield Emulator(line.removeprefix("listening on "), str(ca), trusted, tmp)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def secret_credential(emulator):
    from azure.identity import ClientSecretCredential

    cred = ClientSecretCredential(
        TENANT,
        CLIENT_ID,
        CLIENT_SECRET,
        authority=emulator.url,
        disable_instance_discovery=True,
        **emulator.kwargs(),
    )
    yield cred
    cred.close()


@pytest.fixture
def secret_client(emulator, secret_credential):
    from azure.keyvault.secrets import SecretClient

    client = SecretClient(emulator.url, secret_credential, verify_challenge_resource=False, **emulator.kwargs())
    yield client
    client.close()
