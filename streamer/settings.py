"""Runtime settings (where Kafka and Redis are, topic names, partitions), from env or a file.

Environment variables are prefixed `HEALTHSTREAM_` (e.g. `HEALTHSTREAM_KAFKA_BOOTSTRAP`); the
scoring configuration itself is a separate TOML file (`HEALTHSTREAM_SCORE_CONFIG`).

Where the app connects: HEALTHSTREAM_KAFKA_BOOTSTRAP / HEALTHSTREAM_REDIS_URL when set, else the
local stack on 127.0.0.1 at HEALTHSTREAM_KAFKA_PORT / HEALTHSTREAM_REDIS_PORT (the ports
`streamer local up` listens on; 9092 and 6379 by default).
"""

from __future__ import annotations

import difflib
import os
import re
import ssl
import string
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from streamer.contract.messages import plain_message
from streamer.core.config import ScoreConfig
from streamer.local.settings import DEFAULT_KAFKA_PORT, DEFAULT_REDIS_PORT, local_bootstrap, local_redis_url
from streamer.redacted import without_password
from streamer.suggest import unknown_key_hint

FAMILIES = ("subscriptions", "usage", "tickets", "surveys")
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]  # Kafka's names
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
# Kafka's topic alphabet, and a length that leaves room for the suffixes (a topic name is at most
# 249 characters): the app id and the topic prefix are parts of topic names.
KAFKA_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "._-")
MAX_NAME_CHARS = 200


SCORE_CONFIG_VARIABLE = "HEALTHSTREAM_SCORE_CONFIG"


DEFAULT_DATA_DIR = Path(".local/worker")


class ConfigError(Exception):
    """A configuration that cannot be used; the message says what to fix."""


class ExactNames(EnvSettingsSource):
    """The environment read as the rest of healthstream reads it: a variable counts under its
    exact name only, the prefix and the field's name in capitals (`HEALTHSTREAM_PARTITIONS`).
    pydantic-settings matched names in any case: `healthstream_partitions` was read (the last of
    two spellings won) while the warning about unknown variables called `HEALTHSTREAM_Partitions`
    ignored, and the local stack read neither. The settings' fields are all simple values (no
    JSON in a variable), so none is complex."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.env_vars.get(f"{self.env_prefix}{field_name.upper()}"), field_name, False


class ExactNamesSettings(BaseSettings):
    """Settings whose environment is read under exact names only (`ExactNames`)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """pydantic-settings' sources in its order, the environment read by `ExactNames`."""
        return init_settings, ExactNames(settings_cls), dotenv_settings, file_secret_settings


class Settings(ExactNamesSettings):
    model_config = SettingsConfigDict(
        env_prefix="HEALTHSTREAM_", case_sensitive=True, extra="forbid", frozen=True, allow_inf_nan=False
    )

    # The local stack's ports, read as `streamer local up` reads them: the app connects there
    # unless the address below is set. Declared before the addresses, whose defaults use them.
    kafka_port: Annotated[int, Field(ge=1, le=65535)] = DEFAULT_KAFKA_PORT
    redis_port: Annotated[int, Field(ge=1, le=65535)] = DEFAULT_REDIS_PORT
    # Unset: the local stack at the port above (`_local_stack_addresses`).
    kafka_bootstrap: str = Field(default=None, validate_default=True)
    # A secured cluster (TLS and/or SASL), as managed Kafka services require: see
    # `streamer.stream.access`. The CA file is for a broker whose certificate the system's trust
    # store does not vouch for; the certificate and key files are for TLS client authentication.
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: FilePath | None = None
    kafka_ssl_certfile: FilePath | None = None
    kafka_ssl_keyfile: FilePath | None = None
    redis_url: str = Field(default=None, validate_default=True)
    # Where the worker projects its snapshots and alerts for the view: Redis, or nowhere ("off";
    # a deployment that only reads the output topics).
    projection: Literal["redis", "off"] = "redis"
    topic_prefix: str = "cs."
    partitions: Annotated[int, Field(ge=1, le=1024)] = 4
    # Copies of every topic the app creates (inputs, outputs, changelogs): 1 suits the local
    # single-broker stack; a production cluster wants 3 (managed services often require it).
    replication_factor: Annotated[int, Field(ge=1, le=32)] = 1
    app_id: str = "healthstream"
    data_dir: Path = DEFAULT_DATA_DIR
    store: Literal["rocksdb://", "memory://"] = "rocksdb://"
    score_config: Path | None = None
    # Failover: a stopped or killed worker's partitions move to the others once the group
    # coordinator misses its heartbeats for this long (the broker allows 6 s to 30 min).
    session_timeout_s: Annotated[float, Field(ge=6, le=1800)] = 60.0
    # At least 0.1 s: faust passes whole milliseconds on, and 1e-9 became 0, a heartbeat flood.
    heartbeat_interval_s: Annotated[float, Field(ge=0.1, le=600)] = 3.0
    # Workers that also keep a copy of other partitions' tables (from their changelogs), so a
    # partition that moves to them is ready without replaying its changelog first.
    standby_replicas: Annotated[int, Field(ge=0, le=16)] = 0
    # What one compressed record batch may expand to in a consumer: past it the batch is not
    # decompressed and its records are dead-lettered (a few KB of zstd can expand to gigabytes;
    # the broker bounds only the compressed size). See `streamer.stream.bounded_batches`.
    max_batch_expanded_mb: Annotated[int, Field(ge=2, le=4096)] = 64

    @field_validator("kafka_port", "redis_port", mode="before")
    @classmethod
    def _empty_port_is_the_default(cls, port: object, info: ValidationInfo) -> object:
        """An empty variable means the default port, as for `streamer local up`."""
        if isinstance(port, str) and not port.strip():
            return cls.model_fields[info.field_name or ""].default
        return port

    @field_validator("score_config", mode="before")
    @classmethod
    def _empty_path_is_none(cls, path: object) -> object:
        """An empty variable means no file (it read as the current directory)."""
        if isinstance(path, str) and not path.strip():
            return None
        return path

    @field_validator("projection", mode="before")
    @classmethod
    def _projection_words(cls, mode: object) -> object:
        """`off` also as none, 0 or false, in any case: the words the variable took before."""
        if isinstance(mode, str):
            mode = mode.strip().lower()
            return "off" if mode in ("none", "0", "false") else mode
        return mode

    @field_validator("app_id", "topic_prefix")
    @classmethod
    def _kafka_name(cls, name: str, info: ValidationInfo) -> str:
        """Characters of Kafka's topic names only: the app id names the changelog topics
        (`{app_id}-{table}-changelog`), the consumer group and a data directory, the prefix every
        topic. An empty app id created topics named `-accounts-changelog`, then failed in faust
        with a traceback; a character Kafka refuses failed when the topics were created."""
        least = 1 if info.field_name == "app_id" else 0
        if not least <= len(name) <= MAX_NAME_CHARS:
            raise ValueError(f"must be {least} to {MAX_NAME_CHARS} characters, not {len(name)}")
        bad = sorted({char for char in name if char not in KAFKA_NAME_CHARS})
        if bad:
            raise ValueError(
                f"{''.join(bad)!r}: only letters A-Z a-z, digits, '.', '_' and '-' can be in "
                "a Kafka topic name"
            )
        if least and name in (".", ".."):  # as a prefix they start a longer name
            raise ValueError(f"{name!r} cannot name a topic or a directory")
        return name

    @field_validator("kafka_bootstrap", "redis_url", mode="before")
    @classmethod
    def _local_stack_addresses(cls, address: object, info: ValidationInfo) -> object:
        """An unset address is the local stack's, at its (validated) port."""
        if address is not None:
            return address
        if info.field_name == "kafka_bootstrap":
            return local_bootstrap(info.data.get("kafka_port", DEFAULT_KAFKA_PORT))
        return local_redis_url(info.data.get("redis_port", DEFAULT_REDIS_PORT))

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_host_ports(cls, servers: str) -> str:
        """HOST[:PORT][,HOST[:PORT]...], a port 1-65535 (9092 when left out), IPv6 in brackets:
        anything else failed later, in the Kafka client, with a traceback."""
        for server in (part.strip() for part in servers.split(",")):
            host, port = server, ""
            if server.rfind(":") > server.rfind("]"):
                host, _, port = server.rpartition(":")
            if not host or (":" in host and not host.startswith("[")):
                raise ValueError(
                    f"{server!r} is not HOST or HOST:PORT (an IPv6 address in brackets: [::1]:9092); "
                    "give HOST[:PORT] separated by commas"
                )
            if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
                raise ValueError(f"{server!r}: the port must be a number from 1 to 65535")
            problem = None if host.startswith("[") else host_name_problem(host)
            if problem:
                raise ValueError(f"{server!r}: {problem}")
        return servers

    @field_validator("redis_url")
    @classmethod
    def _redis_url_redis_py_reads(cls, url: str, info: ValidationInfo) -> str:
        """A URL redis-py connects with to where it says (`redis_url_problem`); the local stack's,
        written above, is taken as it is (redis-py takes a tenth of a second to import)."""
        if url == local_redis_url(info.data.get("redis_port", DEFAULT_REDIS_PORT)):
            return url
        problem = redis_url_problem(url)
        if problem:
            raise ValueError(problem)
        return url

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir_as_a_shell_means_it(cls, value: Any) -> Any:
        """Empty is the default, as for the other variables (it put the tables in the current
        folder), and `~` is the home folder (it made a folder named `~`)."""
        if isinstance(value, str):
            return Path(value.strip()).expanduser() if value.strip() else DEFAULT_DATA_DIR
        return value

    @field_validator("heartbeat_interval_s")
    @classmethod
    def _heartbeat_within_session(cls, heartbeat: float, info: ValidationInfo) -> float:
        session = info.data.get("session_timeout_s")
        if session is not None and heartbeat > session / 3:
            raise ValueError(
                f"must be at most a third of the session timeout ({session:g} s: "
                f"HEALTHSTREAM_SESSION_TIMEOUT_S), so that a missed heartbeat or two does not end "
                f"the membership; use {session / 3:g} or less"
            )
        return heartbeat

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> Settings:
        """SASL needs a user and a password, and they a protocol that uses SASL; TLS files need a
        protocol that uses TLS."""
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_") and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(
                f"HEALTHSTREAM_KAFKA_SECURITY_PROTOCOL={protocol} needs HEALTHSTREAM_KAFKA_SASL_USERNAME "
                "and HEALTHSTREAM_KAFKA_SASL_PASSWORD"
            )
        sasl = [name for name in ("username", "password") if getattr(self, f"kafka_sasl_{name}")]
        if sasl and not protocol.startswith("SASL_"):
            # As the TLS files below: the clients connected without them, and the broker's refusal
            # did not say the credentials had been left out.
            raise ValueError(
                f"HEALTHSTREAM_KAFKA_SASL_{sasl[0].upper()} is set but HEALTHSTREAM_KAFKA_SECURITY_PROTOCOL="
                f"{protocol} does not use SASL: use SASL_SSL or SASL_PLAINTEXT, or unset it"
            )
        files = [name for name in ("cafile", "certfile", "keyfile") if getattr(self, f"kafka_ssl_{name}")]
        if files and not protocol.endswith("SSL"):
            raise ValueError(
                f"HEALTHSTREAM_KAFKA_SSL_{files[0].upper()} is set but HEALTHSTREAM_KAFKA_SECURITY_PROTOCOL="
                f"{protocol} does not use TLS: use SSL or SASL_SSL, or unset the file"
            )
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ValueError(
                "HEALTHSTREAM_KAFKA_SSL_KEYFILE needs HEALTHSTREAM_KAFKA_SSL_CERTFILE, the client certificate"
            )
        if files:
            tls_files_problem(self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
        return self

    def topic(self, name: str) -> str:
        """Full topic name, e.g. `usage` -> `cs.usage`."""
        return f"{self.topic_prefix}{name}"

    @property
    def input_topics(self) -> dict[str, str]:
        return {family: self.topic(family) for family in FAMILIES}

    @cached_property
    def score(self) -> ScoreConfig:
        return load_score_config(self.score_config)


def tls_files_problem(cafile: Path | None, certfile: Path | None, keyfile: Path | None) -> None:
    """ValueError naming the TLS file that OpenSSL cannot load, and why. A file that is not PEM
    certificates (or a key that does not match, or is encrypted) failed as the first client
    connected, reported as the broker refusing the TLS handshake."""
    context = ssl.create_default_context()
    try:
        if cafile is not None:
            context.load_verify_locations(cafile=str(cafile))
    except (ssl.SSLError, OSError) as error:
        raise ValueError(
            f"HEALTHSTREAM_KAFKA_SSL_CAFILE {str(cafile)!r} cannot be loaded as PEM certificates ({error})"
        ) from None
    if certfile is None:
        return

    def no_passphrase() -> bytes:
        raise ValueError("the key is encrypted, and the client has no passphrase to give")

    try:
        context.load_cert_chain(
            str(certfile), None if keyfile is None else str(keyfile), password=no_passphrase
        )
    except (ssl.SSLError, OSError, ValueError) as error:
        names = "HEALTHSTREAM_KAFKA_SSL_CERTFILE" + (" and HEALTHSTREAM_KAFKA_SSL_KEYFILE" if keyfile else "")
        raise ValueError(f"{names} cannot be loaded as a client certificate and its key ({error})") from None


def host_name_problem(host: str) -> str | None:
    """Why a resolver cannot look `host` up, or None. It encodes the name (IDNA) first, as
    `socket.getaddrinfo` does: a name with an empty part (`hooks..example.com`) or a part over 63
    characters failed there with a UnicodeError traceback, at every connection."""
    try:
        host.encode("idna")
    except UnicodeError:
        return (
            f"{host!r} is not a host name (a part between dots is empty or over 63 characters, "
            "or holds a character no host name can)"
        )
    return None


REDIS_DATABASE_PATH = re.compile(r"/?|/[0-9]+")


def redis_url_problem(url: str) -> str | None:
    """Why redis-py would not connect where `url` says, or None. Its `parse_url` refuses a
    scheme other than redis://, rediss:// and unix:// and a query option it cannot read (the
    worker failed with a traceback); what it takes silently is refused here: no host (`redis:///0`
    went to localhost:6379, not HEALTHSTREAM_REDIS_PORT), port 0 (6379), a path that is not a
    database number (`/abc` and `/0/x` were database 0) and a negative database (the writes
    waited for ever). The messages never hold the password."""
    from redis.connection import parse_url  # only for a URL set by hand: a tenth of a second

    try:
        options = parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as error:  # its messages name the scheme, the option or the port, no value
        return str(error).rstrip(".")
    parts = urlsplit(url)  # parse_url has read its port: a number 0-65535
    if parts.scheme == "unix":
        if not options.get("path"):
            return "a unix:// URL needs the socket's path: unix:///PATH/redis.sock"
    elif not options.get("host"):
        return (
            f"no host: give {parts.scheme}://HOST[:PORT][/DB] (without one redis-py goes to localhost:6379)"
        )
    elif parts.port == 0:
        return "the port must be 1 to 65535 (redis-py takes 0 as 6379)"
    elif not REDIS_DATABASE_PATH.fullmatch(parts.path):
        return "the path must be the database number (/0, /1, ...) or left out for database 0"
    if options.get("db", 0) < 0:  # ?db=-1
        return "the database number must be 0 or more"
    known = _redis_url_options(parts.scheme)
    unknown = sorted(set(options) - known)
    if unknown:  # passed to the connection as it is: a TypeError at the first connection
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"redis-py has no connection option {unknown[0]!r}{hint}"
    return None


def _redis_url_options(scheme: str) -> set[str]:
    """What a redis:// URL may set: the parameters of redis-py's connection for `scheme` and of
    its connection pool, and what its `parse_url` itself returns."""
    import inspect

    from redis.asyncio import connection

    kinds = {"rediss": connection.SSLConnection, "unix": connection.UnixDomainSocketConnection}
    names = {"connection_class", "host", "port", "path", "db", "username", "password"}
    for cls in (*kinds.get(scheme, connection.Connection).__mro__, connection.ConnectionPool):
        if "__init__" in vars(cls):
            names |= set(inspect.signature(cls.__init__).parameters)  # type: ignore[misc]
    return names - {"self", "args", "kwargs"}


def redis_url_shown(url: object) -> str:
    """`url` as an error may show it: its password as *** (`redacted.without_password`)."""
    return repr(without_password(url)) if isinstance(url, str) else repr(url)


ENV_PREFIXES = {"Settings": "HEALTHSTREAM_", "ViewSettings": "HEALTHSTREAM_VIEW_"}
# How an error shows the value of a variable that may hold a secret.
SHOWN = {"HEALTHSTREAM_REDIS_URL": redis_url_shown}


def settings_problem(error: ValidationError) -> str | None:
    """One line naming each bad HEALTHSTREAM_* variable, its value and what is wrong; None when
    the error is not about the runtime settings."""
    prefix = ENV_PREFIXES.get(error.title)
    if prefix is None:
        return None
    problems, of_one = [], False
    for item in error.errors(include_url=False):
        if not item["loc"]:  # a rule across variables: its message names them and says what to do
            problems.append(plain_message(item))
            continue
        name = prefix + "_".join(str(part) for part in item["loc"]).upper()
        shown = SHOWN.get(name, repr)(item.get("input"))
        problems.append(f"{name}={shown} is not valid ({plain_message(item)})")
        of_one = True
    return "; ".join(problems) + (": fix the variable or unset it for the default" if of_one else "")


# A configuration, a notify config or a mapping is a few kilobytes; past this it is not one (a
# device such as /dev/zero was read until memory ran out).
MAX_TOML_BYTES = 16 * 1024 * 1024


def read_toml(path: Path, what: str, error: type[Exception], shown: str | None = None) -> dict[str, Any]:
    """The data of the TOML file `what` at `path`; `error` in one line when the file is missing,
    cannot be read, is larger than `MAX_TOML_BYTES`, is not UTF-8 (with the offset of the first
    bad byte) or is not valid TOML (with the line and column of the mistake). A UTF-8 byte order
    mark, which some editors write, is skipped. `shown`: how the messages name the file (default
    its path)."""
    path_text = shown if shown is not None else str(path)
    try:
        with Path(path).open("rb") as file:
            data = file.read(MAX_TOML_BYTES + 1)
        if len(data) > MAX_TOML_BYTES:
            raise error(
                f"{what} file {path_text} is larger than {MAX_TOML_BYTES // (1024 * 1024)} MiB: not a {what}"
            )
        return tomllib.loads(data.decode("utf-8-sig"))  # TOML is UTF-8, whatever the locale
    except FileNotFoundError:
        raise error(f"{what} file {path_text} does not exist") from None
    except OSError as exc:
        raise error(f"{what} file {path_text} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{what} file {path_text} is not UTF-8 (byte {exc.start} cannot be decoded)") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} file {path_text} is not valid TOML: {exc}") from None
    except RecursionError:  # the parser recurses once per level of nesting
        raise error(
            f"{what} file {path_text} is not valid TOML: arrays or tables nested too deeply"
        ) from None


def load_score_config(path: Path | None) -> ScoreConfig:
    """Read and validate the scoring TOML file (defaults when `path` is None)."""
    if path is None:
        return ScoreConfig()
    shown = f"{path}{_from_variable(path)}"
    data = read_toml(path, "score config", ConfigError, shown)
    try:
        return ScoreConfig.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(
            f"  - {'.'.join(str(p) for p in error['loc']) or '(top level)'}: {plain_message(error)}"
            + (
                unknown_key_hint(ScoreConfig, error)
                if error["type"] == "extra_forbidden"  # its input is the whole unknown value
                else ""
                if not error["loc"]  # the whole file: the message names the keys
                else _got(error.get("input"))
            )
            for error in exc.errors(include_url=False)
        )
        raise ConfigError(f"score config file {shown} is invalid:\n{problems}") from None


def _from_variable(path: Path) -> str:
    """` (HEALTHSTREAM_SCORE_CONFIG)` when `path` is the file that variable names, else "": a
    missing file named only by its path sent people looking for a --config they never gave."""
    named = os.environ.get(SCORE_CONFIG_VARIABLE, "").strip()
    return f" ({SCORE_CONFIG_VARIABLE})" if named and Path(named) == Path(path) else ""


GOT_CHARS = 120  # of the value a bad key holds, in its error line


def _got(value: Any) -> str:
    """` (got VALUE)`, cut to `GOT_CHARS`: a rule over a whole table (a `[model]` naming a
    signal that does not exist) printed the table, over a kilobyte."""
    text = repr(value)
    return f" (got {text if len(text) <= GOT_CHARS else text[: GOT_CHARS - 3] + '...'})"
