"""How every Kafka client of ours reaches the broker: its address and, on a secured cluster, TLS
and SASL (PLAIN or SCRAM), from the `HEALTHSTREAM_KAFKA_*` settings.

One `KafkaAccess` is made from the settings and handed to whatever opens a client: every aiokafka
producer, consumer and admin client (`client_options`) and the worker's faust app (its
credentials are made in `streamer.stream.app`, which imports faust), so that no client of the
product reaches a secured broker without them.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.helpers import create_ssl_context

from streamer.settings import SaslMechanism, SecurityProtocol, Settings


@dataclass(frozen=True)
class KafkaAccess:
    """The broker's address and how to authenticate to it (PLAINTEXT: neither TLS nor SASL)."""

    bootstrap: str
    protocol: SecurityProtocol = "PLAINTEXT"
    mechanism: SaslMechanism = "PLAIN"  # for SASL
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: Path | None = None  # CAs to trust instead of the system's
    certfile: Path | None = None  # TLS client authentication
    keyfile: Path | None = None

    @classmethod
    def of(cls, settings: Settings) -> KafkaAccess:
        password = settings.kafka_sasl_password
        return cls(
            settings.kafka_bootstrap,
            settings.kafka_security_protocol,
            settings.kafka_sasl_mechanism,
            settings.kafka_sasl_username,
            None if password is None else password.get_secret_value(),
            settings.kafka_ssl_cafile,
            settings.kafka_ssl_certfile,
            settings.kafka_ssl_keyfile,
        )

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of a client (None without TLS): the system's CAs or `cafile`, host
        names checked, and the client certificate when given."""
        if not self.tls:
            return None
        context: ssl.SSLContext = create_ssl_context(
            cafile=None if self.cafile is None else str(self.cafile),
            certfile=None if self.certfile is None else str(self.certfile),
            keyfile=None if self.keyfile is None else str(self.keyfile),
        )
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for an aiokafka producer, consumer or admin client."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.sasl:
            options.update(
                sasl_mechanism=self.mechanism,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password,
            )
        return options


def plain(bootstrap: str) -> KafkaAccess:
    """An unsecured broker at `bootstrap` (the local stack's)."""
    return KafkaAccess(bootstrap)
