"""Settings of the HTTP view: where it listens and its optional bearer token (HEALTHSTREAM_VIEW_*)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from streamer.settings import ExactNamesSettings


class ViewSettings(ExactNamesSettings):
    """`HEALTHSTREAM_VIEW_HOST` (127.0.0.1), `_PORT` (8000), `_TOKEN` (none: no authentication),
    `_KAFKA_CHECK` (whether /healthz also asks the broker, default yes), `_WORKER_MAX_AGE_S` (a
    worker that has not reported for this long no longer counts as reporting, default 30),
    `_WORKER_STALL_S` (how long a worker may leave input waiting with nothing committed before
    /healthz calls it stalled, default 60), `_REDIS_POOL_SIZE` (at most this many Redis
    connections, default 50) and `_REDIS_POOL_TIMEOUT_S` (how long a request waits for a free one
    before a 503, default 20: the bound of a queue, not a typical wait); `_ALLOWED_HOSTS` (the names,
    besides IP addresses and localhost, a view without a token answers; comma separated, `*`
    any)."""

    model_config = SettingsConfigDict(
        env_prefix="HEALTHSTREAM_VIEW_", case_sensitive=True, extra="ignore", frozen=True
    )

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    token: SecretStr | None = None
    kafka_check: bool = True
    worker_max_age_s: Annotated[float, Field(gt=0)] = 30.0
    worker_stall_s: Annotated[float, Field(gt=0)] = 60.0
    redis_pool_size: Annotated[int, Field(ge=1, le=10_000)] = 50
    redis_pool_timeout_s: Annotated[float, Field(gt=0, le=300)] = 20.0
    # Host names a view without a token answers besides IP addresses and localhost, comma
    # separated (`*`: any): see `streamer.view.security.trusted_hosts`.
    allowed_hosts: str = ""

    @property
    def host_names(self) -> tuple[str, ...]:
        """`allowed_hosts` as a list."""
        return tuple(name.strip() for name in self.allowed_hosts.split(",") if name.strip())

    @property
    def secret(self) -> str | None:
        """The bearer token, None when empty or unset. Blanks around it are not part of it: a
        token read from a secret file keeps the file's last line break, and no header matched."""
        value = self.token.get_secret_value().strip() if self.token is not None else ""
        return value or None
