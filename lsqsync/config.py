"""Connection settings. Credentials come from the environment only (LSQ_ACCESS_KEY,
LSQ_SECRET_KEY); they are never read from files, and never shown."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from lsqsync.errors import ConfigError

ENV_HOST = "LSQ_HOST"
ENV_ACCESS_KEY = "LSQ_ACCESS_KEY"
ENV_SECRET_KEY = "LSQ_SECRET_KEY"  # noqa: S105 - the variable name, not a secret


@dataclass(frozen=True)
class Connection:
    host: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)


def connection_from_env(
    env: Mapping[str, str] | None = None, host: str | None = None
) -> Connection:
    """The host (``host`` argument, else LSQ_HOST) and the keys from the environment."""
    env = os.environ if env is None else env
    host = host or env.get(ENV_HOST, "").strip()
    missing = [
        name
        for name, value in (
            (ENV_HOST, host),
            (ENV_ACCESS_KEY, env.get(ENV_ACCESS_KEY, "")),
            (ENV_SECRET_KEY, env.get(ENV_SECRET_KEY, "")),
        )
        if not value
    ]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)} not set: lsqsync reads the LeadSquared host and API keys "
            "from the environment (keys: My Account > Settings > API and Webhooks)"
        )
    return Connection(host, env[ENV_ACCESS_KEY].strip(), env[ENV_SECRET_KEY].strip())
