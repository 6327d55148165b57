"""How the clients reach a secured broker: the settings' TLS and SASL become the same options for
every aiokafka client and faust's credentials, and incomplete ones are refused at start-up."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pydantic
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from streamer.core.config import ScoreConfig
from streamer.settings import Settings, settings_problem
from streamer.stream.access import KafkaAccess, plain
from streamer.stream.app import create_app, faust_credentials
from tests.fixtures import self_signed_certificate

SECURITY_VARIABLES = (
    "SECURITY_PROTOCOL",
    "SASL_MECHANISM",
    "SASL_USERNAME",
    "SASL_PASSWORD",
    "SSL_CAFILE",
    "SSL_CERTFILE",
    "SSL_KEYFILE",
)


@pytest.fixture(autouse=True)
def _no_security_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECURITY_VARIABLES:
        monkeypatch.delenv(f"HEALTHSTREAM_KAFKA_{name}", raising=False)


def secured(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    """Set HEALTHSTREAM_KAFKA_<NAME> for each `NAME=value` (names as in SECURITY_VARIABLES)."""
    for name, value in variables.items():
        monkeypatch.setenv(f"HEALTHSTREAM_KAFKA_{name}", value)


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate (PEM) to trust."""
    certificate, _ = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    return certificate


def test_plaintext_is_the_default_and_carries_no_credentials() -> None:
    access = KafkaAccess.of(Settings(kafka_bootstrap="broker:9092"))
    assert access == plain("broker:9092")
    assert access.client_options() == {"bootstrap_servers": "broker:9092", "security_protocol": "PLAINTEXT"}
    assert faust_credentials(access) is None


def test_sasl_ssl_gives_every_client_the_login_and_a_verifying_tls_context(
    monkeypatch: pytest.MonkeyPatch, ca_file: Path
) -> None:
    secured(
        monkeypatch,
        SECURITY_PROTOCOL="SASL_SSL",
        SASL_MECHANISM="SCRAM-SHA-512",
        SASL_USERNAME="svc",
        SASL_PASSWORD="s3cret",
        SSL_CAFILE=str(ca_file),
    )
    settings = Settings(kafka_bootstrap="broker:9093")
    assert "s3cret" not in repr(settings) and "s3cret" not in repr(KafkaAccess.of(settings))
    options = KafkaAccess.of(settings).client_options()
    context = options.pop("ssl_context")
    assert options == {
        "bootstrap_servers": "broker:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "s3cret",
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    # faust's clients (the worker's consumer, producer and its own admin) get the same
    credentials = faust_credentials(KafkaAccess.of(settings))
    auth = dict(credentials_to_aiokafka_auth(credentials))
    assert isinstance(auth.pop("ssl_context"), ssl.SSLContext)
    assert auth == {k: v for k, v in options.items() if k != "bootstrap_servers"}


def test_ssl_alone_has_no_sasl_options(monkeypatch: pytest.MonkeyPatch, ca_file: Path) -> None:
    secured(monkeypatch, SECURITY_PROTOCOL="SSL", SSL_CAFILE=str(ca_file))
    options = KafkaAccess.of(Settings(kafka_bootstrap="broker:9093")).client_options()
    assert sorted(options) == ["bootstrap_servers", "security_protocol", "ssl_context"]
    credentials = faust_credentials(KafkaAccess.of(Settings(kafka_bootstrap="broker:9093")))
    assert isinstance(credentials, faust.SSLCredentials)


def test_the_worker_app_is_built_with_the_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secured(monkeypatch, SECURITY_PROTOCOL="SASL_PLAINTEXT", SASL_USERNAME="svc", SASL_PASSWORD="s3cret")
    settings = Settings(app_id="hs-test", data_dir=tmp_path)
    app = create_app(settings, ScoreConfig(), store="memory://")
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert auth["security_protocol"] == "SASL_PLAINTEXT" and auth["sasl_plain_username"] == "svc"


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        (
            {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_USERNAME": "svc"},
            "HEALTHSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs HEALTHSTREAM_KAFKA_SASL_USERNAME and "
            "HEALTHSTREAM_KAFKA_SASL_PASSWORD",
        ),
        (
            {
                "SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "SASL_USERNAME": "u",
                "SASL_PASSWORD": "p",
                "SSL_CAFILE": "CA",
            },
            "HEALTHSTREAM_KAFKA_SSL_CAFILE is set but "
            "HEALTHSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT does not use TLS",
        ),
        (  # left out of the connection without a word
            {"SASL_USERNAME": "svc", "SASL_PASSWORD": "p"},
            "HEALTHSTREAM_KAFKA_SASL_USERNAME is set but HEALTHSTREAM_KAFKA_SECURITY_PROTOCOL=PLAINTEXT "
            "does not use SASL",
        ),
        (
            {"SECURITY_PROTOCOL": "SSL", "SASL_PASSWORD": "p"},
            "HEALTHSTREAM_KAFKA_SASL_PASSWORD is set but HEALTHSTREAM_KAFKA_SECURITY_PROTOCOL=SSL "
            "does not use SASL",
        ),
        ({"SECURITY_PROTOCOL": "TLS"}, "HEALTHSTREAM_KAFKA_SECURITY_PROTOCOL='TLS' is not valid"),
        ({"SSL_CAFILE": "/no/such/ca.pem"}, "HEALTHSTREAM_KAFKA_SSL_CAFILE='/no/such/ca.pem' is not valid"),
    ],
)
def test_incomplete_security_settings_are_one_line_problems(
    monkeypatch: pytest.MonkeyPatch, ca_file: Path, variables: dict[str, str], problem: str
) -> None:
    secured(
        monkeypatch, **{name: str(ca_file) if value == "CA" else value for name, value in variables.items()}
    )
    with pytest.raises(pydantic.ValidationError) as caught:
        Settings()
    found = settings_problem(caught.value)
    assert found is not None and found.startswith(problem), found


def test_tls_files_openssl_cannot_load_are_named_at_start_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ca_file: Path
) -> None:
    """Loaded by the first client that connected, they failed as the broker refusing the TLS
    handshake, which sent the user to the broker instead of the file."""
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    other_key = self_signed_certificate(tmp_path / "other")[1]

    def problem(**variables: str) -> str | None:
        for name in ("SSL_CAFILE", "SSL_CERTFILE", "SSL_KEYFILE"):
            monkeypatch.delenv(f"HEALTHSTREAM_KAFKA_{name}", raising=False)
        secured(monkeypatch, SECURITY_PROTOCOL="SSL", **variables)
        try:
            Settings()
        except pydantic.ValidationError as error:
            return settings_problem(error)
        return None

    found = problem(SSL_CAFILE=str(not_pem))
    assert found is not None and found.startswith(
        f"HEALTHSTREAM_KAFKA_SSL_CAFILE {str(not_pem)!r} cannot be loaded as PEM certificates ("
    ), found
    found = problem(SSL_CERTFILE=str(ca_file), SSL_KEYFILE=str(other_key))  # a key of another certificate
    assert found is not None and found.startswith(
        "HEALTHSTREAM_KAFKA_SSL_CERTFILE and HEALTHSTREAM_KAFKA_SSL_KEYFILE cannot be loaded as a client "
        "certificate and its key ("
    ), found
    assert problem(SSL_CAFILE=str(ca_file)) is None
    assert (
        problem(
            SSL_CAFILE=str(ca_file), SSL_CERTFILE=str(ca_file), SSL_KEYFILE=str(ca_file.parent / "key.pem")
        )
        is None
    )
