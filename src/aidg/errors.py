"""The exception tree of AIDG.

Every error AIDG raises on purpose derives from :class:`AIDGError`, so a caller
can catch the whole family at once, and every message says what to fix::

    AIDGError
    ├── ConfigError              a setting is out of range or inconsistent
    ├── DataError                input data cannot be used
    │   ├── MissingTableError    a required table file is absent
    │   └── DataValidationError  rows break the schema (carries every problem found)
    ├── NotFoundError            an id that does not exist (merchant, table, version, decision)
    ├── ConflictError            an id that must be unique was used twice (decision id)
    ├── BackendUnavailableError  a store, cache or bus server cannot be reached (names its URL)
    └── SimulationError          the simulator was asked for something it cannot make
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


class AIDGError(Exception):
    """Base of every error AIDG raises on purpose."""


class ConfigError(AIDGError, ValueError):
    """A setting is out of range or inconsistent with another one."""


class DataError(AIDGError, ValueError):
    """Input data cannot be used as it is."""


class MissingTableError(DataError):
    """A table the operation needs is not in the data folder."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the data: where it is and what is wrong.

    ``row`` is the 0-based row number in the file (``None`` for a problem with
    the whole table or column).
    """

    table: str
    column: str | None
    row: int | None
    value: object
    message: str

    def __str__(self) -> str:
        where = f"table {self.table!r}"
        if self.row is not None:
            where += f", row {self.row}"
        if self.column is not None:
            where += f", column {self.column!r}"
        shown = "" if self.value is None else f" (value: {self.value!r})"
        return f"{where}: {self.message}{shown}"


class DataValidationError(DataError):
    """Rows break the schema; ``problems`` lists each one (table, row, column)."""

    def __init__(self, problems: list[Problem], *, more: int = 0) -> None:
        self.problems = problems
        self.more = more
        lines = [str(p) for p in problems]
        if more:
            lines.append(f"... and {more} more problems")
        super().__init__(f"{len(problems) + more} data problem(s):\n  " + "\n  ".join(lines))


class NotFoundError(AIDGError, KeyError):
    """An id (merchant, table, model version) that does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "not found"


class ConflictError(AIDGError, ValueError):
    """An id that must be unique (a decision id) was used again."""


class BackendUnavailableError(AIDGError, ConnectionError):
    """A backend server (Redis, PostgreSQL, Kafka) cannot be reached; the message names it and its URL."""


class SimulationError(AIDGError, ValueError):
    """The simulator was asked for something it cannot make (e.g. an unknown scale)."""


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``: for messages that name a server.

    >>> redact("redis://user:secret@cache:6379/0")
    'redis://user:***@cache:6379/0'
    >>> redact("redis://127.0.0.1:6379/0")
    'redis://127.0.0.1:6379/0'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
