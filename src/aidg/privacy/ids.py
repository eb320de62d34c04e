"""Merchant ids in logs only as a keyed hash (memo, "Hash merchant IDs in logs").

``hash_id(id, key)`` is ``"mh-" + the first 16 hex digits of HMAC-SHA256(key, id)``: stable for one key (a
support engineer can follow one merchant through the logs by hashing its id with the same key), not
reversible without the key, and not guessable by hashing candidate ids (a plain hash of ``m-000123``
would be). The key is ``AIDG_PRIVACY__ID_HASH_KEY``.

:class:`RedactIds` is a ``logging.Filter`` that rewrites every record before any handler writes it:
each substring that matches the merchant-id pattern (``privacy.id_pattern``, the simulator's
``m-000123`` by default; set it to your marketplace's format) becomes its hash, in the message, its
arguments and the formatted exception. :func:`install` applies it to every record the process makes
(uvicorn's access log prints request paths, which carry ids).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HASH_PREFIX = "mh-"
DEFAULT_ID_PATTERN = r"(?<![\w-])m-\d{4,}(?![\w-])"


def hash_id(merchant_id: str, key: str) -> str:
    """The keyed hash a merchant id is logged as (HMAC-SHA256, 64 bits shown)."""
    digest = hmac.new(key.encode(), str(merchant_id).encode(), hashlib.sha256).hexdigest()
    return HASH_PREFIX + digest[:16]


def glob_escape(text: str) -> str:
    """``text`` with the glob characters ``*?[`` escaped as ``[c]``: a literal in fnmatch and Redis MATCH alike
    (a lone ``]`` is already literal in both)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def hash_key(secret: str) -> str:
    """A short unkeyed fingerprint of a secret (an API key), for audit records: who, never the secret."""
    return "k-" + hashlib.sha256(secret.encode()).hexdigest()[:12]


class RedactIds(logging.Filter):
    """Rewrites merchant ids in a log record to their keyed hashes (see the module docstring)."""

    def __init__(self, key: str, pattern: str = DEFAULT_ID_PATTERN) -> None:
        super().__init__("aidg-redact-ids")
        self.key = key
        self.pattern = re.compile(pattern)

    def redact(self, text: str) -> str:
        return self.pattern.sub(lambda m: hash_id(m.group(0), self.key), text)

    def _value(self, v: Any) -> Any:
        if isinstance(v, str):
            return self.redact(v)
        if isinstance(v, int | float | bool) or v is None:
            return v
        return self.redact(str(v))  # ids inside exceptions, paths, tuples: formatted once, then redacted

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self.redact(record.msg)
        else:
            record.msg = self._value(record.msg)
        if isinstance(record.args, dict):
            record.args = {k: self._value(v) for k, v in record.args.items()}
        elif record.args:
            record.args = tuple(self._value(a) for a in record.args)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
            record.exc_info = None  # the redacted text is what handlers print
        return True


_installed: dict[str, Any] = {}


def install(key: str, pattern: str = DEFAULT_ID_PATTERN, log_file: Path | None = None) -> RedactIds:
    """Redact ids in every log record of this process, whichever logger and handler (idempotent).

    A record factory does it as the record is made, so handlers that a server configures later
    (uvicorn replaces its own at start) cannot bypass it. With ``log_file``, INFO and above are also
    appended there: the file the erasure and retention jobs scrub.
    """
    redactor = RedactIds(key, pattern)
    base = _installed.get("base") or logging.getLogRecordFactory()
    _installed["base"] = base

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = base(*args, **kwargs)
        redactor.filter(record)
        return record

    logging.setLogRecordFactory(factory)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        root = logging.getLogger()
        for h in [h for h in root.handlers if getattr(h, "_aidg_log", False)]:
            if Path(getattr(h, "baseFilename", "")) != log_file.resolve():
                root.removeHandler(h)  # one AIDG log file per process: the latest home's
                h.close()
        if not any(getattr(h, "_aidg_log", False) for h in root.handlers):
            handler = logging.FileHandler(log_file, encoding="utf-8")
            handler._aidg_log = True  # type: ignore[attr-defined]
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"))
            handler.setLevel(logging.INFO)
            root.addHandler(handler)
            if root.level > logging.INFO or root.level == logging.NOTSET:
                root.setLevel(logging.INFO)
    return redactor


def scrub_file(path: Path, needles: Iterable[str], replacement: str = "[erased]") -> int:
    """Replace every occurrence of ``needles`` in a text file (atomically); returns how many were replaced."""
    text = path.read_text(encoding="utf-8", errors="replace")
    count = 0
    for needle in needles:
        if needle:
            count += text.count(needle)
            text = text.replace(needle, replacement)
    if count:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return count


__all__ = [
    "DEFAULT_ID_PATTERN",
    "HASH_PREFIX",
    "RedactIds",
    "glob_escape",
    "hash_id",
    "hash_key",
    "install",
    "scrub_file",
]
