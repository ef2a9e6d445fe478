"""SecretClient + ClientSecretCredential against the emulator."""

import datetime
import uuid

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from conftest import CLIENT_ID, TENANT


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_latest_and_by_version(emulator, secret_client):
    name = unique("db-password")
    v1 = emulator.set_secret(name, "first")
    v2 = emulator.set_secret(name, "second", contentType="text/plain", tags={"team": "payments"})

    latest = secret_client.get_secret(name)
    assert latest.value == "second"
    assert latest.name == name
    assert latest.properties.version == v2
    assert latest.properties.content_type == "text/plain"
    assert latest.properties.tags == {"team": "payments"}
    assert latest.properties.enabled is True
    assert isinstance(latest.properties.created_on, datetime.datetime)
    assert latest.properties.recovery_level == "Recoverable+Purgeable"
    assert latest.id == f"{emulator.url}/secrets/{name}/{v2}"
    assert latest.properties.vault_url == emulator.url

    old = secret_client.get_secret(name, v1)
    assert old.value == "first"
    assert old.properties.version == v1
    assert old.properties.content_type is None

    # The SDK asks for the latest with a trailing slash.
    assert emulator.fetches(f"/secrets/{name}") == 1
    assert emulator.fetches(f"/secrets/{name}/{v1}") == 1


def test_seeded_secret(secret_client):
    assert secret_client.get_secret("seeded").value == "from-the-command-line"


def test_list_versions_follows_next_link(emulator, secret_client):
    name = unique("rotated")
    versions = {emulator.set_secret(name, f"value-{i}") for i in range(7)}
    listed = list(secret_client.list_properties_of_secret_versions(name, max_page_size=3))
    assert {p.version for p in listed} == versions
    assert all(p.name == name and p.enabled for p in listed)
    # 7 items, 3 per page: three pages fetched through nextLink.
    assert emulator.fetches(f"/secrets/{name}/versions") == 3


def test_list_secrets(emulator, secret_client):
    name = unique("listed")
    emulator.set_secret(name, "x")
    names = {p.name for p in secret_client.list_properties_of_secrets()}
    assert name in names and "seeded" in names


def test_missing_secret_is_resource_not_found(secret_client):
    with pytest.raises(ResourceNotFoundError) as err:
        secret_client.get_secret("does-not-exist")
    assert err.value.error.code == "SecretNotFound"
    with pytest.raises(ResourceNotFoundError):
        secret_client.get_secret("seeded", "0" * 32)


def test_disabled_version_is_forbidden(emulator, secret_client):
    name = unique("disabled")
    v1 = emulator.set_secret(name, "one")
    v2 = emulator.set_secret(name, "two")
    emulator.admin("POST", f"/vaults/{emulator.vault}/secrets/{name}/{v2}/disable")
    with pytest.raises(HttpResponseError) as err:
        secret_client.get_secret(name)
    assert err.value.status_code == 403
    assert err.value.error.code == "Forbidden"
    assert secret_client.get_secret(name, v1).value == "one"
    disabled = [p for p in secret_client.list_properties_of_secret_versions(name) if not p.enabled]
    assert [p.version for p in disabled] == [v2]


def test_denied_identity_gets_403(emulator, secret_client):
    name = unique("denied")
    emulator.set_secret(name, "x")
    emulator.admin("POST", "/denials", {"vault": emulator.vault, "identity": CLIENT_ID, "object": f"secrets/{name}"})
    try:
        with pytest.raises(HttpResponseError) as err:
            secret_client.get_secret(name)
        assert err.value.status_code == 403
        assert "does not have secrets get permission" in err.value.message
    finally:
        emulator.admin("DELETE", "/denials")
    assert secret_client.get_secret(name).value == "x"


def test_wrong_client_secret_is_refused(emulator):
    from azure.identity import ClientSecretCredential
    from azure.keyvault.secrets import SecretClient

    cred = ClientSecretCredential(
        TENANT, CLIENT_ID, "not-the-secret", authority=emulator.url, disable_instance_discovery=True, **emulator.kwargs()
    )
    client = SecretClient(emulator.url, cred, verify_challenge_resource=False, **emulator.kwargs())
    with pytest.raises(ClientAuthenticationError) as err:
        client.get_secret("seeded")
    assert "AADSTS7000215" in str(err.value)


def test_api_version_pinned(emulator, secret_credential):
    from azure.keyvault.secrets import SecretClient

    client = SecretClient(
        emulator.url, secret_credential, api_version="7.5", verify_challenge_resource=False, **emulator.kwargs()
    )
    assert client.get_secret("seeded").value == "from-the-command-line"
