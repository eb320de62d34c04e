"""A small, safe binary format for a few numpy arrays plus JSON metadata (no pickle).

Values read back from Redis are untrusted bytes, so the format is plain data:

* 4 bytes magic ``b"AIDA"``, 1 byte format version, 3 bytes zero padding;
* 4 bytes little-endian unsigned length ``n`` of the header, then ``n`` bytes of
  JSON: ``{"meta": {...}, "arrays": [[name, dtype, shape, offset, nbytes], ...]}``
  (``dtype`` is numpy's ``dtype.str``, e.g. ``"<f4"``; ``offset`` counts from the
  start of the data section);
* zero padding to an 8-byte boundary, then the data section: each array's raw
  C-contiguous buffer, each starting on an 8-byte boundary.

Only boolean and numeric dtypes (``b``, ``i``, ``u``, ``f``, ``c``) are allowed;
object, string and structured arrays are refused with :class:`DataError` on both
sides. :func:`unpack_arrays` returns read-only ``np.frombuffer`` views into the
input bytes (no copy), and checks every size and offset first, so corrupt or
truncated input raises :class:`DataError` rather than anything else.

>>> import numpy as np
>>> blob = pack_arrays({"version": 3}, {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "ok": np.array([True])})
>>> meta, arrays = unpack_arrays(blob)
>>> meta
{'version': 3}
>>> arrays["x"].dtype, arrays["x"].shape, float(arrays["x"][1, 2])
(dtype('float32'), (2, 3), 5.0)
>>> unpack_arrays(b"not a blob at all")
Traceback (most recent call last):
...
aidg.errors.DataError: corrupt array blob: bad magic b'not ' (expected b'AIDA')
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from aidg.errors import DataError

MAGIC = b"AIDA"
VERSION = 1
_PREFIX = struct.Struct("<4sB3xI")  # magic, version, padding, header length
_ALIGN = 8
_KINDS = frozenset("biufc")
_DTYPES: dict[str, np.dtype[Any]] = {}  # dtype.str -> dtype, filled on first use (only allowed kinds)


def _pad(n: int) -> int:
    return -n % _ALIGN


def _dtype(text: object, name: object) -> np.dtype[Any]:
    """The numpy dtype named by ``text``; DataError unless it is boolean or numeric."""
    if isinstance(text, str):
        cached = _DTYPES.get(text)
        if cached is not None:
            return cached
        try:
            dt = np.dtype(text)
        except (TypeError, ValueError) as exc:
            raise DataError(f"corrupt array blob: array {name!r} has an unknown dtype {text!r} ({exc})") from None
        if dt.kind in _KINDS and dt.str == text:
            _DTYPES[text] = dt
            return dt
    raise DataError(
        f"corrupt array blob: array {name!r} has dtype {text!r}; only boolean and numeric dtypes are allowed"
    )


def pack_arrays(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialise JSON-able ``meta`` and boolean/numeric ``arrays`` into one bytes value.

    Args:
        meta: JSON-serialisable metadata (tuples come back as lists).
        arrays: name -> array; any layout (non-contiguous arrays are copied to C order).

    Returns:
        The blob, readable by :func:`unpack_arrays`.

    Raises:
        DataError: an array has an object, string or other non-numeric dtype, or
            ``meta`` is not JSON-serialisable.
    """
    entries: list[list[Any]] = []
    buffers: list[bytes | memoryview] = []
    offset = 0
    for name, value in arrays.items():
        arr = np.asarray(value)
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr)  # (0-d arrays are always contiguous: it would make them 1-d)
        if arr.dtype.kind not in _KINDS:
            raise DataError(
                f"cannot pack array {name!r} of dtype {arr.dtype}: only boolean and numeric dtypes are allowed"
            )
        pad = _pad(offset)
        if pad:
            buffers.append(b"\0" * pad)
            offset += pad
        entries.append([str(name), arr.dtype.str, list(arr.shape), offset, arr.nbytes])
        buffers.append(arr.reshape(-1).view(np.uint8).data)
        offset += arr.nbytes
    try:
        header = orjson.dumps({"meta": dict(meta), "arrays": entries})
    except TypeError as exc:
        raise DataError(f"cannot pack metadata: it must be JSON-serialisable ({exc})") from None
    prefix = _PREFIX.pack(MAGIC, VERSION, len(header))
    return b"".join([prefix, header, b"\0" * _pad(len(prefix) + len(header)), *buffers])


def unpack_arrays(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a blob made by :func:`pack_arrays`.

    Args:
        data: The blob (``bytes``, ``bytearray`` or ``memoryview``).

    Returns:
        ``(meta, arrays)``; the arrays are read-only views into ``data`` with the
        packed dtype and shape.

    Raises:
        DataError: the blob is not one of ours, of another version, truncated or corrupt.
    """
    size = len(data)
    if size < _PREFIX.size:
        raise DataError(f"corrupt array blob: {size} bytes is shorter than the {_PREFIX.size}-byte prefix")
    magic, version, header_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise DataError(f"corrupt array blob: bad magic {bytes(magic)!r} (expected {MAGIC!r})")
    if version != VERSION:
        raise DataError(f"array blob has format version {version}; this code reads version {VERSION}")
    header_end = _PREFIX.size + header_len
    if header_end > size:
        raise DataError(f"corrupt array blob: the {header_len}-byte header runs past the end ({size} bytes)")
    try:
        header = orjson.loads(memoryview(data)[_PREFIX.size : header_end])
        meta = header["meta"]
        entries = header["arrays"]
    except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
        raise DataError(f"corrupt array blob: unreadable header ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(entries, list):
        raise DataError("corrupt array blob: the header must hold a 'meta' object and an 'arrays' list")
    start = header_end + _pad(header_end)
    available = size - start
    arrays: dict[str, np.ndarray] = {}
    dtypes = _DTYPES
    for entry in entries:  # this loop is the hot path: checks are inlined
        try:
            name, dtype_text, shape, offset, nbytes = entry
        except (TypeError, ValueError):
            raise DataError(f"corrupt array blob: bad array entry {entry!r}") from None
        if type(name) is not str:
            raise DataError(f"corrupt array blob: array name {name!r} is not a string")
        dt = dtypes.get(dtype_text) if type(dtype_text) is str else None
        if dt is None:
            dt = _dtype(dtype_text, name)
        if type(shape) is not list:
            raise DataError(f"corrupt array blob: array {name!r} has a bad shape {shape!r}")
        count = 1
        for d in shape:
            if type(d) is not int or d < 0:
                raise DataError(f"corrupt array blob: array {name!r} has a bad shape {shape!r}")
            count *= d
        if type(offset) is not int or offset < 0 or type(nbytes) is not int:
            raise DataError(f"corrupt array blob: array {name!r} has a bad offset/size {offset!r}/{nbytes!r}")
        if count * dt.itemsize != nbytes:
            raise DataError(
                f"corrupt array blob: array {name!r} declares {nbytes} bytes but shape {shape} of {dt} needs "
                f"{count * dt.itemsize}"
            )
        if offset + nbytes > available:
            raise DataError(
                f"corrupt array blob: array {name!r} ({nbytes} bytes at data offset {offset}) runs past the end "
                f"of the data ({available} bytes)"
            )
        # positional arguments: keywords double the cost here; both are read-only views into ``data``
        if len(shape) == 1:
            arrays[name] = np.frombuffer(data, dt, count, start + offset)
        else:
            arrays[name] = np.ndarray(tuple(shape), dt, data, start + offset)
    return meta, arrays
