"""The local stack's broker configuration: the optional SASL_SSL listener (StackSettings.secure_port)
is in server.properties only when its port is set, and the default stack's file is unchanged; its
self-signed certificate is made once, for 127.0.0.1 and localhost.

No broker runs here (tests/integration/test_secured_kafka.py starts one)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from streamer.local import kafka
from streamer.local.errors import StackError
from streamer.local.settings import StackSettings

PORTS = {"kafka_port": 41092, "controller_port": 41093, "redis_port": 41379}
SECURE_PORT = 41094

# server.properties of a stack without the secure listener (ports above, folders replaced)
PLAIN_LISTENERS = {
    "listeners": "PLAINTEXT://127.0.0.1:41092,CONTROLLER://127.0.0.1:41093",
    "advertised.listeners": "PLAINTEXT://127.0.0.1:41092",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "inter.broker.listener.name": "PLAINTEXT",
    "controller.listener.names": "CONTROLLER",
}


def settings(tmp_path: Path, secure_port: int | None = None) -> StackSettings:
    return StackSettings.from_env(
        {}, stack_dir=tmp_path / "stack", cache_dir=tmp_path / "cache", secure_port=secure_port, **PORTS
    )


def properties(stack: StackSettings) -> dict[str, str]:
    """server.properties as a dict (its comment lines left out)."""
    text = kafka.server_properties(stack)
    pairs = [line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")]
    return {key: value for key, value in pairs}


def test_without_a_secure_port_the_broker_has_only_its_plaintext_and_controller_listeners(
    tmp_path: Path,
) -> None:
    stack = settings(tmp_path)
    assert stack.secure_port is None and stack.secure_bootstrap is None
    config = properties(stack)
    assert {key: config[key] for key in PLAIN_LISTENERS} == PLAIN_LISTENERS
    assert "SASL" not in kafka.server_properties(stack)
    assert not [key for key in config if key.startswith(("listener.name.", "sasl.", "ssl."))]


def test_a_secure_port_adds_a_sasl_ssl_listener_and_changes_nothing_else(tmp_path: Path) -> None:
    plain, secure = properties(settings(tmp_path)), properties(settings(tmp_path, SECURE_PORT))
    assert secure["listeners"] == PLAIN_LISTENERS["listeners"] + ",SASL_SSL://127.0.0.1:41094"
    assert secure["advertised.listeners"] == "PLAINTEXT://127.0.0.1:41092,SASL_SSL://127.0.0.1:41094"
    assert secure["listener.security.protocol.map"].split(",") == [
        "PLAINTEXT:PLAINTEXT",
        "CONTROLLER:PLAINTEXT",
        "SASL_SSL:SASL_SSL",
    ]
    assert secure["inter.broker.listener.name"] == "PLAINTEXT"  # the brokers' own traffic
    changed = {key for key in plain if secure[key] != plain[key]}
    assert changed == {"listeners", "advertised.listeners", "listener.security.protocol.map"}
    added = {key: value for key, value in secure.items() if key not in plain}
    assert all(key.startswith("listener.name.sasl_ssl.") for key in added), added
    assert "authorizer.class.name" not in secure  # any authenticated client may do anything


def test_the_secure_listener_offers_plain_and_scram_to_the_local_user(tmp_path: Path) -> None:
    stack = settings(tmp_path, SECURE_PORT)
    config = properties(stack)
    prefix = "listener.name.sasl_ssl."
    assert config[prefix + "sasl.enabled.mechanisms"] == "PLAIN,SCRAM-SHA-256"
    plain = config[prefix + "plain.sasl.jaas.config"]
    assert f'user_{kafka.LOCAL_SASL_USER}="{kafka.LOCAL_SASL_PASSWORD}"' in plain
    assert plain.startswith("org.apache.kafka.common.security.plain.PlainLoginModule required")
    assert config[prefix + "scram-sha-256.sasl.jaas.config"].endswith("ScramLoginModule required;")
    assert config[prefix + "ssl.keystore.type"] == "PKCS12"
    assert Path(config[prefix + "ssl.keystore.location"]) == kafka.keystore_path(stack)
    assert kafka.keystore_path(stack).parent == kafka.ca_path(stack).parent == stack.kafka_dir / "tls"
    assert stack.secure_bootstrap == "127.0.0.1:41094"


@pytest.mark.parametrize(
    "port", [0, 70000, PORTS["kafka_port"], PORTS["controller_port"], PORTS["redis_port"]]
)
def test_a_secure_port_out_of_range_or_taken_by_another_service_is_refused(tmp_path: Path, port: int) -> None:
    with pytest.raises(StackError, match="port"):
        settings(tmp_path, port)


@pytest.mark.skipif(shutil.which("java") is None, reason="needs a JDK (keytool) for the certificate")
def test_the_certificate_is_made_once_for_127_0_0_1_and_localhost(tmp_path: Path) -> None:
    stack = settings(tmp_path, SECURE_PORT)
    java = shutil.which("java") or "java"
    messages: list[str] = []
    ca = kafka.ensure_tls(stack, java, echo=messages.append)
    assert ca == kafka.ca_path(stack) and kafka.keystore_path(stack).is_file()
    assert ca.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert ssl.create_default_context(cafile=str(ca)).cert_store_stats()["x509"] == 1  # a PEM clients load
    printed = subprocess.run(
        [kafka.find_keytool(java), "-printcert", "-file", str(ca)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "Owner: CN=127.0.0.1\n" in printed and "Issuer: CN=127.0.0.1\n" in printed  # self-signed
    san = printed[printed.index("SubjectAlternativeName [") :].split("]", 1)[0].split()[2:]
    assert san == ["IPAddress:", "127.0.0.1", "DNSName:", "localhost"]

    made = (ca.stat().st_mtime_ns, kafka.keystore_path(stack).stat().st_mtime_ns)
    assert kafka.ensure_tls(stack, java, echo=messages.append) == ca
    assert (ca.stat().st_mtime_ns, kafka.keystore_path(stack).stat().st_mtime_ns) == made
    assert len(messages) == 1  # "making a self-signed certificate ..." the first time only
