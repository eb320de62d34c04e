"""The ``aidg`` command line (Typer + Rich). Imported by nothing.

Every report command takes ``--json`` and then prints exactly one JSON object on stdout; progress and messages go
to stderr. Commands are grouped into modules (data, models, decide, serving, privacy, demo); importing them
registers them on the one app of :mod:`aidg.cli.common`.
"""

from __future__ import annotations

from aidg.cli import data, decide, demo, models, privacy, serving  # noqa: F401  (each registers its commands)
from aidg.cli.common import app
from aidg.config import load_settings
from aidg.errors import AIDGError


def main() -> None:
    """Entry point of the ``aidg`` script (merchant ids in its logs only as keyed hashes)."""
    from aidg.privacy.ids import install

    try:
        s = load_settings()
        install(s.privacy.id_hash_key, s.privacy.id_pattern)
    except AIDGError:
        pass  # bad settings: the command itself says what to fix
    app()


if __name__ == "__main__":
    main()


__all__ = ["app", "main"]
