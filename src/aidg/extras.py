"""Optional installs: the server backends' clients are extras (``pip install 'aidg[redis,postgres,kafka]'``;
``make`` installs them all). Choosing a backend whose extra is missing fails with the command that adds it."""

from __future__ import annotations

import importlib
from types import ModuleType

from aidg.errors import ConfigError

EXTRAS = {"redis": "redis", "postgres": "psycopg", "kafka": "confluent_kafka"}  # extra → the module it installs


def require(extra: str, what: str) -> ModuleType:
    """The extra's client module, or a ConfigError naming the extra (``what``: the backend that needs it)."""
    module = EXTRAS[extra]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"{what} needs the {extra!r} extra, which is not installed: pip install 'aidg[{extra}]' "
            f"(the {module} package), or choose the embedded backend"
        ) from None


__all__ = ["EXTRAS", "require"]
