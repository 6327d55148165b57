"""Is a Kafka broker answering? Wait for one a bounded time, or say in one line what to do."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Iterator

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from streamer.stream.access import KafkaAccess

RETRY_PAUSE_S = 0.5


class BrokerUnavailable(Exception):
    """No broker answered in time, or it refused our credentials; the message names the address
    and what to do."""


def unreachable(kafka: KafkaAccess, seconds: float, doing: str) -> BrokerUnavailable:
    return BrokerUnavailable(
        f"no Kafka broker answered at {kafka.bootstrap} within {seconds:g} s ({doing}); start it "
        "(`streamer local up`, or `docker compose up -d kafka`) or point HEALTHSTREAM_KAFKA_BOOTSTRAP "
        "(or --bootstrap) at a running one"
        + (
            f" that speaks {kafka.protocol}"
            if kafka.protocol != "PLAINTEXT"
            else " (a cluster that takes TLS or SASL logins also needs HEALTHSTREAM_KAFKA_SECURITY_PROTOCOL)"
        )
    )


class SpeaksTls(Exception):
    """The listener a plaintext client was pointed at completed a TLS handshake."""


def refused(kafka: KafkaAccess, error: Exception, doing: str) -> BrokerUnavailable:
    """The broker answered and refused the TLS handshake or the SASL login, or it takes TLS and
    we spoke plaintext: waiting cannot help."""
    if isinstance(error, SpeaksTls):
        return BrokerUnavailable(
            f"the Kafka listener at {kafka.bootstrap} takes TLS and this client spoke plaintext "
            f"({doing}): set HEALTHSTREAM_KAFKA_SECURITY_PROTOCOL to SSL or SASL_SSL (and its "
            "HEALTHSTREAM_KAFKA_SASL_* login)"
        )
    what = "TLS" if isinstance(error, ssl.SSLError) else f"SASL {kafka.mechanism} login"
    return BrokerUnavailable(
        f"the Kafka broker at {kafka.bootstrap} refused the {what} ({doing}): {error}; check "
        "HEALTHSTREAM_KAFKA_SECURITY_PROTOCOL, HEALTHSTREAM_KAFKA_SASL_* and HEALTHSTREAM_KAFKA_SSL_*"
    )


REFUSALS = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    UnsupportedSaslMechanismError,
    ssl.SSLError,
    SpeaksTls,
)


@contextlib.contextmanager
def _client_logs_silenced() -> Iterator[None]:
    """aiokafka logs each refused connection as an error; while waiting, that is expected."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


async def _answers(kafka: KafkaAccess, timeout_s: float) -> bool:
    """Whether the broker answers; raises one of `REFUSALS` when it refuses our credentials."""
    timeout_ms = max(int(timeout_s * 1000), 1000)
    admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=timeout_ms)
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
        return True
    except REFUSALS:
        raise
    except (KafkaError, OSError, TimeoutError):
        pass
    finally:
        # never started: nothing to close
        with contextlib.suppress(KafkaError, OSError, TimeoutError, AttributeError):
            async with asyncio.timeout(5.0):
                await admin.close()
    await _raise_a_refusal(kafka, timeout_s)
    return False


async def _raise_a_refusal(kafka: KafkaAccess, timeout_s: float) -> None:
    """Raise why the broker refused us, if it did. A client that cannot bootstrap says only
    "Unable to bootstrap" (the cause goes to its log), so one connection of our own, which a
    refused login or TLS handshake ends with its own error, tells a refusal from an absence."""
    host, port, _ = collect_hosts(kafka.bootstrap)[0]
    if not kafka.tls:
        await _raise_if_tls(host, port, timeout_s)
    if not kafka.tls and not kafka.sasl:
        return
    options = kafka.client_options()
    del options["bootstrap_servers"]
    try:
        async with asyncio.timeout(timeout_s):
            connection = await create_conn(host, port, request_timeout_ms=int(timeout_s * 1000), **options)
    except REFUSALS:
        raise
    except (KafkaError, OSError, TimeoutError):
        return
    connection.close()


async def _raise_if_tls(host: str, port: int, timeout_s: float) -> None:
    """`SpeaksTls` when the listener at host:port completes a TLS handshake (a plaintext Kafka
    client gets its connection closed, which looks like no broker at all)."""
    probe = ssl.create_default_context()
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE  # only whether it speaks TLS, not whom to trust
    try:
        async with asyncio.timeout(min(timeout_s, 3.0)):
            _, writer = await asyncio.open_connection(host, port, ssl=probe)
    except (OSError, TimeoutError, ssl.SSLError):
        return
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    raise SpeaksTls(f"{host}:{port}")


async def raise_if_refused(kafka: KafkaAccess, timeout_s: float, doing: str) -> None:
    """BrokerUnavailable (`refused`) when the broker refuses our TLS handshake or SASL login, for
    a command whose client failed to connect; nothing when it does not (absent, or busy)."""
    try:
        with _client_logs_silenced():
            await _raise_a_refusal(kafka, timeout_s)
    except REFUSALS as error:
        raise refused(kafka, error, doing) from None


async def wait_for_broker(kafka: KafkaAccess, timeout_s: float, doing: str = "connecting") -> None:
    """Return once the broker answers; BrokerUnavailable after `timeout_s`, or at once when it
    refuses our credentials."""
    started = time.monotonic()
    while True:
        remaining = timeout_s - (time.monotonic() - started)
        try:
            with _client_logs_silenced():
                answered = await _answers(kafka, max(min(remaining, 10.0), 0.5))
        except REFUSALS as error:
            raise refused(kafka, error, doing) from None
        if answered:
            return
        if time.monotonic() - started + RETRY_PAUSE_S >= timeout_s:
            raise unreachable(kafka, timeout_s, doing)
        await asyncio.sleep(RETRY_PAUSE_S)


def probe(kafka: KafkaAccess, timeout: float = 3.0) -> bool:
    """True when the broker answers and takes our credentials (for /healthz; call it from a
    thread, not a loop)."""
    with _client_logs_silenced():
        try:
            return asyncio.run(_answers(kafka, timeout))
        except REFUSALS:
            return False
