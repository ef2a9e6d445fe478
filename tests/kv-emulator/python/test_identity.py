"""Federated (workload identity) and managed identity credentials."""

import pytest
from azure.core.exceptions import ClientAuthenticationError
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import (
    IDENTITY_HEADER,
    MI_CLIENT_ID,
    TENANT,
    WI_CLIENT_ID,
    sa_claims,
    sign_jwt,
)


def secret_client(emulator, credential):
    from azure.keyvault.secrets import SecretClient

    return SecretClient(emulator.url, credential, verify_challenge_resource=False, **emulator.kwargs())


def assertion_client(emulator, token: str):
    from azure.identity import ClientAssertionCredential

    cred = ClientAssertionCredential(TENANT, WI_CLIENT_ID, lambda: token, authority=emulator.url, **emulator.kwargs())
    return secret_client(emulator, cred)


def test_client_assertion_credential(emulator):
    client = assertion_client(emulator, sign_jwt(emulator.trusted_key, sa_claims()))
    assert client.get_secret("seeded").value == "from-the-command-line"
    identities = {c["identity"] for c in emulator.counters() if c["path"] == "/secrets/seeded" and c["status"] == 200}
    assert WI_CLIENT_ID in identities


def test_workload_identity_credential_from_env(emulator, monkeypatch):
    from azure.identity import WorkloadIdentityCredential

    token_file = emulator.tmp / "azure-identity-token"
    token_file.write_text(sign_jwt(emulator.trusted_key, sa_claims()))
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_CLIENT_ID", WI_CLIENT_ID)
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", emulator.url)
    cred = WorkloadIdentityCredential(**emulator.kwargs())
    assert secret_client(emulator, cred).get_secret("seeded").value == "from-the-command-line"


def test_bad_signature_is_refused(emulator):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client = assertion_client(emulator, sign_jwt(stranger, sa_claims()))
    with pytest.raises(ClientAuthenticationError) as err:
        client.get_secret("seeded")
    assert "AADSTS50013" in str(err.value)


@pytest.mark.parametrize(
    "claims, code",
    [
        (sa_claims(aud=["api://SomethingElse"]), "AADSTS700212"),
        (sa_claims(sub="system:serviceaccount:apps:intruder"), "AADSTS700213"),
        (sa_claims(lifetime=-600), "AADSTS700024"),
    ],
    ids=["wrong-audience", "wrong-subject", "expired"],
)
def test_invalid_assertions_are_refused(emulator, claims, code):
    client = assertion_client(emulator, sign_jwt(emulator.trusted_key, claims))
    with pytest.raises(ClientAuthenticationError) as err:
        client.get_secret("seeded")
    assert code in str(err.value)


@pytest.mark.parametrize("client_id", [None, MI_CLIENT_ID], ids=["system-assigned", "user-assigned"])
def test_managed_identity_credential(emulator, monkeypatch, client_id):
    from azure.identity import ManagedIdentityCredential

    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{emulator.url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    kwargs = {"client_id": client_id} if client_id else {}
    cred = ManagedIdentityCredential(**kwargs, **emulator.kwargs())
    assert secret_client(emulator, cred).get_secret("seeded").value == "from-the-command-line"
    expected = client_id or "system-assigned"
    msi = [c for c in emulator.counters() if c["path"] == "/msi/token" and c["identity"] == expected]
    assert msi and all(c["status"] == 200 for c in msi)


def test_managed_identity_wrong_header_is_refused(emulator, monkeypatch):
    from azure.identity import ManagedIdentityCredential

    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{emulator.url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "wrong")
    cred = ManagedIdentityCredential(**emulator.kwargs())
    with pytest.raises(ClientAuthenticationError):
        cred.get_token("https://vault.azure.net/.default")
