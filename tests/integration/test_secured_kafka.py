"""The stream on a secured Kafka cluster: a broker of this module's own with a SASL_SSL listener
(TLS with a self-signed certificate, SCRAM-SHA-256; see streamer.local.kafka), every `streamer`
subprocess given only that listener and the HEALTHSTREAM_KAFKA_* security settings, and the same
answers as `streamer offline --sort` over the same file.

The listener refuses a client without credentials (checked here), so a command that ignored the
settings could not reach it. The test reads the topics back over SASL_SSL too. Waits poll
conditions; their deadlines only bound a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from test_stream import PARTITIONS, STREAMER, clean_env, simulate_and_score  # the stream tests' helpers

from streamer.local import kafka, proc, tools
from streamer.local.settings import StackSettings
from streamer.local.stack import stop
from streamer.settings import FAMILIES
from tests.fixtures import (
    RedisServer,
    free_port,
    free_ports,
    read_records,
    self_signed_certificate,
    stop_process,
    topic_partitions,
    wait_until,
)

pytestmark = pytest.mark.integration

MECHANISM = "SCRAM-SHA-256"
BROKER_DEADLINE_S = 90.0  # a JVM starting on a busy 2-core machine
SETTLE_DEADLINE_S = 120.0
QUIET_S = 2.0  # every input committed and no new output for this long: the worker is done
REFUSAL_DEADLINE_S = 30.0
# The broker's authorizer: the PLAINTEXT listener (the broker itself, and the test granting
# rights) is a super user; a SASL user may do only what an ACL allows.
AUTHORIZER = {
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "super.users": "User:ANONYMOUS",
    "allow.everyone.if.no.acl.found": "false",
}
TOPIC_OPERATIONS = ("Create", "Describe", "Read", "Write", "DescribeConfigs", "AlterConfigs")
GROUP_OPERATIONS = ("Read", "Describe")
T = TypeVar("T")


def _quiet(_: str) -> None:
    pass


def run(coro: Coroutine[Any, Any, T], deadline_s: float = 60.0) -> T:
    """Run `coro` on a fresh event loop, bounded by `deadline_s`."""

    async def bounded() -> T:
        async with asyncio.timeout(deadline_s):
            return await coro

    return asyncio.run(bounded())


# -- the secured broker ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SecuredBroker:
    """A broker whose SASL_SSL listener is the only address the tested commands are given."""

    settings: StackSettings
    java: str

    def grant(self, prefix: str, app_id: str) -> None:
        """The ACLs the README lists for a deployment's SASL user: its topics (inputs, outputs,
        changelogs) and its consumer groups, by prefix."""
        user = ["--allow-principal", f"User:{kafka.LOCAL_SASL_USER}", "--resource-pattern-type", "prefixed"]
        plain = ["--bootstrap-server", self.settings.bootstrap]
        for operations, resources in (
            (TOPIC_OPERATIONS, ["--topic", prefix, "--topic", f"{app_id}-"]),
            (GROUP_OPERATIONS, ["--group", app_id]),
        ):
            rights = [part for operation in operations for part in ("--operation", operation)]
            argv = kafka._java_argv(self.settings, self.java, "kafka.admin.AclCommand", *plain, "--add")
            done = subprocess.run(
                [*argv, *user, *rights, *resources], capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, done.stdout + done.stderr

    @property
    def bootstrap(self) -> str:
        assert self.settings.secure_bootstrap is not None
        return self.settings.secure_bootstrap

    @property
    def cafile(self) -> Path:
        return kafka.ca_path(self.settings)

    def env(self) -> dict[str, str]:
        """The HEALTHSTREAM_KAFKA_* variables of a command that reaches it."""
        return {
            "HEALTHSTREAM_KAFKA_BOOTSTRAP": self.bootstrap,
            "HEALTHSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "HEALTHSTREAM_KAFKA_SASL_MECHANISM": MECHANISM,
            "HEALTHSTREAM_KAFKA_SASL_USERNAME": kafka.LOCAL_SASL_USER,
            "HEALTHSTREAM_KAFKA_SASL_PASSWORD": kafka.LOCAL_SASL_PASSWORD,
            "HEALTHSTREAM_KAFKA_SSL_CAFILE": str(self.cafile),
        }

    def options(self, password: str | None = kafka.LOCAL_SASL_PASSWORD) -> dict[str, Any]:
        """An aiokafka client's options for the listener: TLS trusting its certificate, and SASL
        unless `password` is None."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": "SSL",
            "ssl_context": create_ssl_context(cafile=str(self.cafile)),
            "request_timeout_ms": 10_000,
        }
        if password is not None:
            options.update(
                security_protocol="SASL_SSL",
                sasl_mechanism=MECHANISM,
                sasl_plain_username=kafka.LOCAL_SASL_USER,
                sasl_plain_password=password,
            )
        return options

    def up(self) -> bool:
        """Whether the listener answers the test user (fails when the broker exited)."""
        assert kafka.running_pid(self.settings) is not None, "the secured broker exited:\n" + (
            proc.log_tails(kafka.log_paths(self.settings))
        )
        return run(_answers(self.options()), 30)


async def _answers(options: dict[str, Any]) -> bool:
    """Whether a client with `options` gets the cluster's metadata."""
    admin = AIOKafkaAdminClient(**options)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except KafkaError:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    """A single-node broker of its own (folder, free ports, the cached jars of the session's
    stack) with a SASL_SSL listener; stopped when the module's tests are done."""
    shared = StackSettings.from_env()  # only for where the jars are cached
    kafka_port, controller_port, secure_port, spare_port = free_ports(4)
    settings = StackSettings.from_env(
        stack_dir=tmp_path_factory.mktemp("secured-stack"),
        cache_dir=shared.cache_dir,
        kafka_port=kafka_port,
        controller_port=controller_port,
        redis_port=spare_port,  # not started: the test has a Redis of its own
        secure_port=secure_port,
    )
    java = tools.require([tools.JAVA])["java"]
    kafka.ensure_jars(settings, shutil.which("mvn"), echo=_quiet)
    config = kafka.prepare(settings, java, echo=_quiet)
    with config.open("a") as properties:  # ACLs decide what the SASL user may do (README's list)
        properties.write("".join(f"{key}={value}\n" for key, value in AUTHORIZER.items()))
    kafka.start(settings, java, config, echo=_quiet)
    broker = SecuredBroker(settings, java)
    try:
        wait_until("the secured broker's SASL_SSL listener", broker.up, BROKER_DEADLINE_S, every=0.5)
        yield broker
    finally:
        stop(settings, services=["kafka"], echo=_quiet, timeout=20)


REDIS_PASSWORD = "redis-s3cret"


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of its own as a managed one is reached: over TLS only, with a password (its URL is
    rediss://:<password>@...?ssl_ca_certs=<its self-signed certificate>)."""
    folder = tmp_path_factory.mktemp("secured-redis")
    certificate, key = self_signed_certificate(folder)
    server = RedisServer(folder, password=REDIS_PASSWORD, tls=(certificate, key))
    server.start()
    yield server
    server.stop()


# -- a history and its offline answers ------------------------------------------------------------


# -- reading the secured topics -------------------------------------------------------------------


async def _progress(
    options: dict[str, Any], group: str, inputs: list[str], outputs: list[str]
) -> tuple[int, int]:
    """(input messages `group` has not committed, records on `outputs`), from end offsets."""
    consumer = AIOKafkaConsumer(**options, group_id=None)
    admin = AIOKafkaAdminClient(**options)
    await consumer.start()
    try:
        await admin.start()
        partitions = [tp for topic in inputs for tp in await topic_partitions(consumer, topic)]
        produced = [tp for topic in outputs for tp in await topic_partitions(consumer, topic)]
        end = await consumer.end_offsets(partitions + produced)
        committed = await admin.list_consumer_group_offsets(group)
        lag = sum(end[tp] - max(committed[tp].offset if tp in committed else 0, 0) for tp in partitions)
        return lag, sum(end[tp] for tp in produced)
    finally:
        await consumer.stop()
        await admin.close()


@dataclass
class Settling:
    """Whether a consumer group has committed every input and its outputs have been quiet."""

    options: dict[str, Any]
    group: str
    inputs: list[str]
    outputs: list[str]
    last: tuple[int, int] | None = None  # (lag, output records) at the last poll
    since: float = field(default_factory=time.monotonic)  # when that last changed

    def done(self) -> bool:
        try:
            now = run(_progress(self.options, self.group, self.inputs, self.outputs), 30)
        except (KafkaError, AssertionError, TimeoutError):  # no coordinator or output topic yet
            return False
        if now != self.last:
            self.last, self.since = now, time.monotonic()
        return now[0] == 0 and time.monotonic() - self.since >= QUIET_S


def refused(options: dict[str, Any]) -> str | None:
    """Why a client with `options` gets no metadata from the broker (None: it got in)."""
    try:
        return None if run(_answers(options), REFUSAL_DEADLINE_S) else "refused"
    except TimeoutError:
        return f"no answer in {REFUSAL_DEADLINE_S:.0f} s"


# -- the test -------------------------------------------------------------------------------------


def test_a_worker_on_a_sasl_ssl_cluster_gives_offlines_answers(
    secured_broker: SecuredBroker, private_redis: RedisServer, tmp_path: Path
) -> None:
    # The listener lets no one in without credentials, so a command that ignored the settings
    # would fail below (a client that gets in with them is checked by the fixture).
    plaintext = {"bootstrap_servers": secured_broker.bootstrap, "request_timeout_ms": 10_000}
    for what, client in (
        ("TLS without SASL", secured_broker.options(password=None)),
        ("a wrong password", secured_broker.options(password="not-the-password")),
        ("plaintext", plaintext),
    ):
        assert refused(client), f"a client with {what} got the cluster's metadata"

    answers = simulate_and_score(tmp_path / "history", seed=7, accounts=10, months=2)
    assert answers.alerts, "a history without alerts would compare nothing on cs.alerts"
    tag = uuid.uuid4().hex[:12]
    prefix, app_id = f"s{tag}.", f"hss-{tag}"
    secured_broker.grant(prefix, app_id)
    env = {
        **clean_env(),
        **secured_broker.env(),
        "HEALTHSTREAM_REDIS_URL": private_redis.url,
        "HEALTHSTREAM_TOPIC_PREFIX": prefix,
        "HEALTHSTREAM_APP_ID": app_id,
        "HEALTHSTREAM_DATA_DIR": str(tmp_path / "data"),
        "HEALTHSTREAM_PARTITIONS": str(PARTITIONS),
        "HEALTHSTREAM_STORE": "memory://",
    }
    log = tmp_path / "worker.log"
    with log.open("ab") as handle:
        worker = subprocess.Popen([STREAMER, "worker"], env=env, stdout=handle, stderr=subprocess.STDOUT)

    def worker_tail() -> str:
        return "\n".join(log.read_text(errors="replace").splitlines()[-30:])

    try:
        replayed = subprocess.run(
            [STREAMER, "replay", str(answers.events), "--quiet", "--timeout", "60"],
            env=env,
            capture_output=True,
            timeout=180,
        )
        assert replayed.returncode == 0, f"streamer replay failed:\n{replayed.stderr.decode()}"

        options = secured_broker.options()
        inputs = [prefix + family for family in FAMILIES]
        outputs = [prefix + "health", prefix + "alerts"]
        settling = Settling(options, app_id, inputs, outputs)

        def caught_up() -> bool:
            assert worker.poll() is None, f"the worker exited with {worker.returncode}:\n{worker_tail()}"
            return settling.done()

        try:
            wait_until("the worker to commit every input", caught_up, SETTLE_DEADLINE_S, every=0.5)
        except AssertionError as error:
            alive = f"\n{worker_tail()}" if worker.poll() is None else ""  # else the error has its log
            raise AssertionError(f"{error}; (lag, output records) {settling.last}{alive}") from None

        health = run(read_records(options, prefix + "health"))
        alerts = [orjson.loads(record.value) for record in run(read_records(options, prefix + "alerts"))]
        _the_views_check_and_writes_reach_the_cluster(
            env, options, prefix, sorted(answers.accounts)[0], tmp_path
        )
    finally:
        stop_process(worker, 10)

    last: dict[str, dict[str, Any]] = {}
    for record in sorted(health, key=lambda r: (r.partition, r.offset)):
        last[record.key.decode()] = orjson.loads(record.value)
    assert sorted(last) == sorted(answers.accounts)
    differing = [account for account in sorted(last) if last[account] != answers.accounts[account]]
    assert not differing, (
        f"{len(differing)} of {len(last)} final snapshots differ from offline's: {differing}"
    )
    assert sorted(alert["alert_id"] for alert in alerts) == sorted(answers.alerts)
    assert [alert for alert in alerts if alert != answers.alerts[alert["alert_id"]]] == []


TOKEN = "secured-view-token"


def _the_views_check_and_writes_reach_the_cluster(
    env: dict[str, str], options: dict[str, Any], prefix: str, account_id: str, folder: Path
) -> None:
    """`streamer view` on the same settings: its /healthz reaches the broker, and a profile
    posted to it is published over SASL_SSL and applied by the worker (dated at the end of the
    replayed history: one dated now is refused there, see test_identity.py)."""
    port = free_port()
    view_env = {**env, "HEALTHSTREAM_VIEW_PORT": str(port), "HEALTHSTREAM_VIEW_TOKEN": TOKEN}
    log = folder / "view.log"
    with log.open("ab") as handle:
        view = subprocess.Popen([STREAMER, "view"], env=view_env, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:

        def healthz() -> dict[str, Any] | None:
            assert view.poll() is None, f"the view exited:\n{log.read_text(errors='replace')}"
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:
                    return dict(orjson.loads(response.read()))
            except OSError:
                return None

        wait_until("the view to answer", lambda: healthz() is not None, 60, every=0.2)
        health = healthz() or {}
        assert health["kafka"] == {"checked": True, "reachable": True} and health["redis"]["reachable"]
        banner = log.read_text(errors="replace")
        assert "rediss://:***@127.0.0.1" in banner and REDIS_PASSWORD not in banner, banner
        profile = {"name": "Secured Co", "owner": "ana@example.com", "occurred_at": health["as_of"]}
        request = urllib.request.Request(
            f"{url}/api/accounts/{account_id}/profile",
            data=orjson.dumps(profile),
            method="POST",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 202

        def renamed() -> bool:
            records = run(read_records(options, prefix + "health"))
            named = [orjson.loads(r.value) for r in records if r.key == account_id.encode()]
            return any((snapshot.get("profile") or {}).get("name") == "Secured Co" for snapshot in named)

        wait_until("the posted profile in the account's snapshot", renamed, SETTLE_DEADLINE_S, every=1.0)
    finally:
        stop_process(view, 10)


@pytest.mark.parametrize(
    "command",
    [
        ["alerts", "tail", "--connect-timeout", "120"],
        ["worker", "--connect-timeout", "120"],
        ["replay", "EVENTS", "--timeout", "120"],
        ["notify", "--config", "CONFIG", "--connect-timeout", "120", "--metrics-port", "0"],
    ],
    ids=["alerts tail", "worker", "replay", "notify"],
)
def test_a_wrong_password_ends_a_command_at_once_naming_the_login(
    secured_broker: SecuredBroker, tmp_path: Path, command: list[str]
) -> None:
    """A broker that refuses the login answers: waiting for one cannot help, so the command ends
    in one line saying what was refused (not "no broker answered" after the connect timeout)."""
    events = tmp_path / "events.jsonl"  # one event: replay refuses an empty file before the broker
    events.write_bytes(
        b'{"event_id": "e1", "event_type": "usage.recorded", "account_id": "a1", '
        b'"occurred_at": "2024-01-01T00:00:00Z", "user_id": "u1", "feature": "f"}\n'
    )
    config = tmp_path / "notify.toml"
    config.write_text('[[destinations]]\nname = "x"\nurl = "http://127.0.0.1:9/hook"\n')
    files = {"EVENTS": str(events), "CONFIG": str(config)}
    env = {
        **clean_env(),
        **secured_broker.env(),
        "HEALTHSTREAM_KAFKA_SASL_PASSWORD": "not-the-password",
        "HEALTHSTREAM_DATA_DIR": str(tmp_path / "data"),
    }
    argv = [STREAMER, *(files.get(part, part) for part in command)]
    done = subprocess.run(argv, env=env, capture_output=True, timeout=150)
    stderr = done.stderr.decode()
    refusal = f"the Kafka broker at {secured_broker.bootstrap} refused the SASL {MECHANISM} login"
    assert done.returncode == 1 and refusal in stderr, stderr
    assert "not-the-password" not in stderr


def test_a_plaintext_client_pointed_at_a_tls_listener_is_told_so_at_once(
    secured_broker: SecuredBroker, tmp_path: Path
) -> None:
    """The listener closes a plaintext client's connection, which looked like no broker at all:
    `alerts tail` waited its whole connect timeout. A TLS handshake tells the two apart."""
    env = {**clean_env(), "HEALTHSTREAM_KAFKA_BOOTSTRAP": secured_broker.bootstrap}
    done = subprocess.run(
        [STREAMER, "alerts", "tail", "--connect-timeout", "120"], env=env, capture_output=True, timeout=150
    )
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"streamer alerts tail: the Kafka listener at {secured_broker.bootstrap} takes TLS and this "
        "client spoke plaintext (following the alerts): set HEALTHSTREAM_KAFKA_SECURITY_PROTOCOL to "
        "SSL or SASL_SSL (and its HEALTHSTREAM_KAFKA_SASL_* login)"
    ), stderr
