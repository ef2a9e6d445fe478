"""CertificateClient, the certificate's backing secret, and KeyClient."""

import base64
import hashlib
import uuid

import pytest
from azure.core.exceptions import ResourceNotFoundError
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def b64url_int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


@pytest.fixture
def certificate_client(emulator, secret_credential):
    from azure.keyvault.certificates import CertificateClient

    client = CertificateClient(emulator.url, secret_credential, verify_challenge_resource=False, **emulator.kwargs())
    yield client
    client.close()


@pytest.fixture
def key_client(emulator, secret_credential):
    from azure.keyvault.keys import KeyClient

    client = KeyClient(emulator.url, secret_credential, verify_challenge_resource=False, **emulator.kwargs())
    yield client
    client.close()


def create_certificate(emulator, name: str, **spec) -> dict:
    return emulator.admin("POST", f"/vaults/{emulator.vault}/certificates/{name}", spec)


def test_pem_certificate_and_backing_secret(emulator, certificate_client, secret_client, key_client):
    name = unique("ingress-tls")
    made = create_certificate(emulator, name, dnsNames=["web.example.test"])
    der = base64.b64decode(made["cer"])

    cert = certificate_client.get_certificate(name)
    assert cert.cer == der
    assert cert.name == name
    assert cert.properties.version == made["version"]
    assert cert.properties.x509_thumbprint == hashlib.sha1(der).digest()
    assert cert.policy.content_type == "application/x-pem-file"
    assert cert.policy.subject == f"CN={name}"
    assert cert.policy.san_dns_names == ["web.example.test"]
    assert cert.secret_id == f"{emulator.url}/secrets/{name}/{made['version']}"
    assert cert.key_id == f"{emulator.url}/keys/{name}/{made['version']}"

    secret = secret_client.get_secret(name)
    assert secret.properties.content_type == "application/x-pem-file"
    assert secret.properties.managed is True
    assert secret.properties.key_id == cert.key_id
    pem = secret.value.encode()
    key = serialization.load_pem_private_key(pem, password=None)
    from_pem = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE-----") :])
    assert from_pem.public_bytes(serialization.Encoding.DER) == der
    assert key.public_key().public_numbers() == from_pem.public_key().public_numbers()

    # The certificate's key is readable as a managed key with the same public half.
    jwk = key_client.get_key(name)
    assert jwk.properties.managed is True
    assert jwk.key.kty == "RSA"
    assert int.from_bytes(jwk.key.n, "big") == from_pem.public_key().public_numbers().n


def test_pfx_certificate(emulator, certificate_client, secret_client):
    name = unique("client-cert")
    made = create_certificate(emulator, name, keyType="EC", contentType="application/x-pkcs12")
    der = base64.b64decode(made["cer"])
    assert certificate_client.get_certificate(name).cer == der
    assert certificate_client.get_certificate(name).policy.key_curve_name == "P-256"

    secret = secret_client.get_secret(name)
    assert secret.properties.content_type == "application/x-pkcs12"
    key, cert, _ = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), None)
    assert cert.public_bytes(serialization.Encoding.DER) == der
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()


def test_pfx_certificate_with_a_chain(emulator, certificate_client, secret_client):
    """A P-384 certificate issued by an intermediate: the PFX holds the leaf
    and both CAs (leaf, root, intermediate), encrypted and MACed as Key
    Vault's are (3DES, SHA-1), which the SDK's users read with cryptography."""
    name = unique("chained-cert")
    made = create_certificate(
        emulator, name, keyType="EC-P384", contentType="application/x-pkcs12", chain=True
    )
    der = base64.b64decode(made["cer"])
    assert certificate_client.get_certificate(name).policy.key_curve_name == "P-384"
    secret = secret_client.get_secret(name)
    key, cert, cas = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), None)
    assert cert.public_bytes(serialization.Encoding.DER) == der
    assert key.curve.name == "secp384r1"
    assert [c.subject.rfc4514_string() for c in cas] == [f"CN={name} root CA", f"CN={name} intermediate CA"]
    intermediate = cas[1]
    cert.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(cas[0])


def test_certificate_versions(emulator, certificate_client):
    name = unique("rotating-cert")
    first = create_certificate(emulator, name)
    second = create_certificate(emulator, name)
    assert certificate_client.get_certificate(name).properties.version == second["version"]
    old = certificate_client.get_certificate_version(name, first["version"])
    assert old.cer == base64.b64decode(first["cer"])
    versions = {p.version for p in certificate_client.list_properties_of_certificate_versions(name)}
    assert versions == {first["version"], second["version"]}


def test_missing_certificate(certificate_client):
    with pytest.raises(ResourceNotFoundError) as err:
        certificate_client.get_certificate("no-such-cert")
    assert err.value.error.code == "CertificateNotFound"


def test_rsa_and_ec_keys(emulator, key_client):
    rsa_name, ec_name = unique("signing-rsa"), unique("signing-ec")
    made = emulator.admin("POST", f"/vaults/{emulator.vault}/keys/{rsa_name}", {"kty": "RSA"})
    key = key_client.get_key(rsa_name)
    assert key.key_type == "RSA"
    assert key.properties.version == made["version"]
    assert key.id == f"{emulator.url}/keys/{rsa_name}/{made['version']}"
    assert int.from_bytes(key.key.n, "big") == b64url_int(made["jwk"]["n"])
    assert int.from_bytes(key.key.e, "big") == 65537
    assert "sign" in key.key_operations

    made = emulator.admin("POST", f"/vaults/{emulator.vault}/keys/{ec_name}", {"kty": "EC"})
    key = key_client.get_key(ec_name, made["version"])
    assert key.key_type == "EC"
    assert key.key.crv == "P-256"
    assert key.key.x == base64.urlsafe_b64decode(made["jwk"]["x"] + "=")
    assert key.key.y == base64.urlsafe_b64decode(made["jwk"]["y"] + "=")

    with pytest.raises(ResourceNotFoundError) as err:
        key_client.get_key("no-such-key")
    assert err.value.error.code == "KeyNotFound"
