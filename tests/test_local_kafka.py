"""The local stack's broker configuration: the optional SASL_SSL listener (StackSettings.secure_port)
is in server.properties only when its port is set, and the default stack's file is unchanged; its
self-signed certificate is made once, for 127.0.0.1 and localhost.

No broker runs here (tests/integration/test_secured_kafka.py starts one)."""

from __future__ import annotations

import re
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


# -- the stack folder in server.properties: Java reads the file as ISO-8859-1, with escapes -------

# Reads one key of a .properties file as Kafka does (Properties.load over a byte stream)
READ_PROPERTY = """
import java.io.FileInputStream;
import java.util.Properties;

public class ReadProperty {
    public static void main(String[] args) throws Exception {
        Properties properties = new Properties();
        try (FileInputStream in = new FileInputStream(args[0])) {
            properties.load(in);
        }
        System.out.write(properties.getProperty(args[1]).getBytes("UTF-8"));
        System.out.flush();
    }
}
"""


def test_a_stack_folder_past_ascii_is_written_as_java_escapes(tmp_path: Path) -> None:
    """Written as UTF-8, a stack folder named café put Kafka's data in a sibling cafÃ©: the
    second `local up` found no storage in café and failed ("already formatted")."""
    stack = StackSettings.from_env(
        {}, stack_dir=tmp_path / "café ☕ 𝄞", cache_dir=tmp_path / "cache", **PORTS
    )
    text = kafka.server_properties(stack)
    assert text.isascii()
    folder = str(tmp_path).replace("\\", "\\\\")
    assert properties(stack)["log.dirs"] == f"{folder}/caf\\u00E9 \\u2615 \\uD834\\uDD1E/kafka/data"


@pytest.mark.parametrize(
    ("text", "key", "written"),
    [
        ("C:\\stack\\new", False, "C:\\\\stack\\\\new"),  # a backslash starts an escape
        ("a=b:c#d!e", False, "a=b:c#d!e"),  # within a value they are plain
        ("a=b:c#d!e f", True, "a\\=b\\:c\\#d\\!e\\ f"),  # within a key they end it or comment it
        ("#first", True, "\\#first"),
        (" lead", False, "\\ lead"),  # a value's leading blank would be dropped
        ("two\nlines\r\t\f", False, "two\\nlines\\r\\t\\f"),
        ("\x00\x7f\xa0é€", False, "\\u0000\\u007F\\u00A0\\u00E9\\u20AC"),
    ],
)
def test_characters_the_properties_format_treats_specially_are_escaped(
    text: str, key: bool, written: str
) -> None:
    assert kafka.escaped(text, key=key) == written


@pytest.mark.skipif(shutil.which("java") is None, reason="needs a JDK to read the file as Kafka does")
def test_java_reads_back_the_stack_folder_it_was_given(tmp_path: Path) -> None:
    folder = tmp_path / "café ☕ 𝄞" / "a\\b=c:d#e!f" / " g"
    stack = StackSettings.from_env(
        {}, stack_dir=folder, cache_dir=tmp_path / "cache", **PORTS, secure_port=SECURE_PORT
    )
    config = tmp_path / "server.properties"
    config.write_text(kafka.server_properties(stack), encoding="ascii")
    source = tmp_path / "ReadProperty.java"
    source.write_text(READ_PROPERTY)
    java = shutil.which("java") or "java"
    for key, expected in [
        ("log.dirs", stack.kafka_dir / "data"),
        ("listener.name.sasl_ssl.ssl.keystore.location", kafka.keystore_path(stack)),
    ]:
        read = subprocess.run(
            [java, str(source), str(config), key], capture_output=True, check=True, timeout=120
        ).stdout.decode()
        assert read == str(expected)


@pytest.mark.parametrize(
    ("variable", "option", "name", "has"),
    [
        # log.dirs is a comma-separated list with no escape: Kafka took the part after the
        # comma as a relative folder and stopped with a stack dump.
        (
            "HEALTHSTREAM_STACK_DIR",
            "stack_dir",
            "st,ack",
            "a comma, which Kafka's log.dirs (a comma-separated list) cannot hold",
        ),
        # The broker's classpath is <cache>/kafka-VERSION/libs/*, and Java has no escape for ':':
        # the jars were downloaded into such a folder, then the broker could not find its main class.
        (
            "HEALTHSTREAM_CACHE_DIR",
            "cache_dir",
            "ca:che",
            "a ':', which separates the entries of Java's classpath (the broker's jars are in it)",
        ),
    ],
    ids=["stack folder, comma", "cache folder, classpath separator"],
)
def test_a_folder_with_a_character_its_file_cannot_hold_is_refused_naming_where_it_was_given(
    tmp_path: Path, variable: str, option: str, name: str, has: str
) -> None:
    folder = tmp_path / name
    other = {"stack_dir": tmp_path / "stack", "cache_dir": tmp_path / "cache"}
    del other[option]
    with pytest.raises(StackError) as info:
        StackSettings.from_env({variable: str(folder)}, **other, **PORTS)
    assert str(info.value) == f"{variable}: {folder} has {has}: name a folder without one"
    flag = "--" + option.replace("_", "-")
    with pytest.raises(StackError, match=rf"^{flag}: .* has {re.escape(has[:7])}"):
        StackSettings.from_env({}, **{option: folder}, **other, **PORTS)
    assert not folder.exists()  # refused before anything is made in it


def test_a_stack_folder_with_a_comma_made_without_the_environment_is_refused_at_its_properties(
    tmp_path: Path,
) -> None:
    made = StackSettings(stack_dir=tmp_path / "st,ack", cache_dir=tmp_path / "cache")  # not through from_env
    with pytest.raises(StackError, match=r"^HEALTHSTREAM_STACK_DIR or --stack-dir: .* has a comma"):
        kafka.server_properties(made)
