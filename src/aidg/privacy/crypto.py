"""Encryption at rest of the files that hold merchant data (DESIGN §8), with ``cryptography``'s Fernet.

A :class:`Cipher` holds the keys of ``AIDG_PRIVACY__ENCRYPTION_KEY`` (a Fernet key; ``"new,old"`` during a
rotation: the first encrypts, every one decrypts). Without a key it is the identity and files stay exactly as
they were. An encrypted file is ``MAGIC`` followed by the binary Fernet token (AES-128-CBC + HMAC-SHA256, a
version byte, a timestamp and a random IV), so a reader tells an encrypted file from a plain one by its first
bytes, and a plain file written before the key was set still reads.

Why Fernet rather than AES-GCM with a home-made header: the setting is already a Fernet key, Fernet is
``cryptography``'s audited recipe (authenticated: a wrong key or a changed byte is detected, never decrypted
into garbage), and ``MultiFernet`` gives key rotation for free. Its cost, the whole file in memory, is fine
for the files it protects (the largest is a model of ~100 MB).

>>> c = Cipher([new_key()])
>>> blob = c.encrypt_bytes(b"m-000001")
>>> blob.startswith(MAGIC), b"m-000001" in blob, c.decrypt_bytes(blob)
(True, False, b'm-000001')
>>> Cipher.plain().encrypt_bytes(b"plain") == b"plain"
True
>>> Cipher([new_key()]).decrypt_bytes(blob)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
aidg.errors.ConfigError: data cannot be decrypted with the configured key (...): set AIDG_PRIVACY__ENCRYPTION_KEY ...
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from aidg.config import Settings, load_settings
from aidg.errors import ConfigError

MAGIC = b"AIDG-ENC1\n"  # the envelope's version; Fernet's token carries its own (0x80)
ENV = "AIDG_PRIVACY__ENCRYPTION_KEY"
_FIX = f'set {ENV} to the key that wrote it (during a rotation: "new,old")'


def new_key() -> str:
    """A fresh random Fernet key (32 bytes, url-safe base64), what ``aidg config --new-key`` prints."""
    return Fernet.generate_key().decode("ascii")


def is_encrypted(data: bytes) -> bool:
    """Whether ``data`` is an encrypted envelope (starts with :data:`MAGIC`)."""
    return data[: len(MAGIC)] == MAGIC


def parse_keys(value: str | None) -> list[str]:
    """The keys of a setting: comma-separated, blanks dropped; empty means no encryption."""
    return [k.strip() for k in (value or "").split(",") if k.strip()]


class Cipher:
    """Encrypts and decrypts the at-rest files; with no key, the identity (plain files, unchanged)."""

    def __init__(self, keys: Sequence[str | bytes] = ()) -> None:
        self._fernet, self._n = self._parse(keys)

    @staticmethod
    def _parse(keys: Sequence[str | bytes]) -> tuple[MultiFernet | None, int]:
        fernets = []
        for i, key in enumerate(keys):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError, binascii.Error):
                which = "the key" if len(keys) == 1 else f"key {i + 1} of {len(keys)}"
                raise ConfigError(
                    f"{ENV}: {which} is not a Fernet key (32 url-safe base64-encoded bytes); "
                    "make one with `aidg config --new-key`"
                ) from None
        return (MultiFernet(fernets) if fernets else None), len(fernets)

    def _f(self) -> MultiFernet | None:
        return self._fernet

    @classmethod
    def plain(cls) -> Cipher:
        """No encryption."""
        return cls(())

    @classmethod
    def from_settings(cls, settings: Settings) -> Cipher:
        """The cipher of ``settings.privacy.encryption_key``."""
        return cls(parse_keys(settings.privacy.encryption_key))

    @staticmethod
    def from_env() -> Cipher:
        """The cipher of the settings in the environment, what a caller without a Settings object gets.

        The environment is read when the cipher is first needed (writing, or reading an encrypted file), so
        reading plain files never depends on the settings.
        """
        return _EnvCipher()

    @property
    def enabled(self) -> bool:
        """Whether a key is set (files are written encrypted)."""
        return self._f() is not None

    @property
    def n_keys(self) -> int:
        self._f()
        return self._n

    def __repr__(self) -> str:  # never the keys
        return f"Cipher(keys={self.n_keys})" if self.enabled else "Cipher(plain)"

    # -- bytes ---------------------------------------------------------------------------------
    def encrypt_bytes(self, data: bytes) -> bytes:
        """``data`` encrypted with the first key (``MAGIC`` + token); unchanged when no key is set."""
        f = self._f()
        if f is None:
            return data
        return MAGIC + base64.urlsafe_b64decode(f.encrypt(data))

    def decrypt_bytes(self, data: bytes, source: str = "data") -> bytes:
        """What :meth:`encrypt_bytes` made, back; plain data passes through.

        An encrypted ``data`` without a key, or with none of the keys that could have written it, raises
        :class:`ConfigError` saying which setting to fix (``source`` names the file in the message).
        """
        if not is_encrypted(data):
            return data
        f = self._f()
        if f is None:
            raise ConfigError(f"{source} is encrypted at rest but no key is set: {_FIX}")
        try:
            return f.decrypt(base64.urlsafe_b64encode(data[len(MAGIC) :]))
        except InvalidToken:
            raise ConfigError(
                f"{source} cannot be decrypted with the configured key (wrong key, or the file is damaged): {_FIX}"
            ) from None

    # -- files ---------------------------------------------------------------------------------
    def write_bytes(self, path: str | os.PathLike[str], data: bytes) -> Path:
        """Write ``data`` (encrypted when a key is set) atomically: a reader never sees half a file."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp{os.getpid()}-{id(data)}")
        try:
            tmp.write_bytes(self.encrypt_bytes(data))
            tmp.replace(p)
        finally:
            tmp.unlink(missing_ok=True)
        return p

    def read_bytes(self, path: str | os.PathLike[str]) -> bytes:
        """A file's content, decrypted when it is encrypted (see :meth:`decrypt_bytes` for the errors)."""
        return self.decrypt_bytes(Path(path).read_bytes(), source=str(path))

    def rotate_file(self, path: str | os.PathLike[str]) -> bool:
        """Re-encrypt an encrypted file with the first key; True when it was rewritten (plain files are left)."""
        with open(path, "rb") as f:
            if not is_encrypted(f.read(len(MAGIC))):
                return False
        self.write_bytes(path, self.read_bytes(path))
        return True

    def rotate_tree(self, roots: Iterable[str | os.PathLike[str]]) -> int:
        """Re-encrypt every encrypted file under ``roots`` with the first key; returns how many were rewritten.

        After it, the old key can be dropped from the setting.
        """
        n = 0
        for root in roots:
            r = Path(root).expanduser()
            for p in sorted(r.rglob("*") if r.is_dir() else [r]):
                if p.is_file() and self.rotate_file(p):
                    n += 1
        return n


class _EnvCipher(Cipher):
    """:meth:`Cipher.from_env`: the keys of ``load_settings()``, read on first use."""

    def __init__(self) -> None:
        self._resolved = False
        self._fernet, self._n = None, 0

    def _f(self) -> MultiFernet | None:
        if not self._resolved:
            self._fernet, self._n = self._parse(parse_keys(load_settings().privacy.encryption_key))
            self._resolved = True
        return self._fernet


__all__ = ["ENV", "MAGIC", "Cipher", "is_encrypted", "new_key", "parse_keys"]
