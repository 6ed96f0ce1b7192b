"""Read a safetensors header by hand, so preflight runs on the core install (no torch, no safetensors).

The format: an 8-byte little-endian header length N, N bytes of JSON (``{name: {dtype, shape,
data_offsets}, "__metadata__": {...}}``), then the tensor data. Offsets are relative to the data.
The checks are those the safetensors library makes before it loads anything.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["HeaderError", "TensorInfo", "read_header"]

MAX_HEADER_BYTES = 100_000_000  # the safetensors library refuses larger headers

# Bytes per element, where whole bytes. Sub-byte types (F4, F6_*) are not size-checked.
_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
}  # fmt: skip


class HeaderError(ValueError):
    """The file is not a valid safetensors file; the message says why."""


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    offset: int = field(default=0, compare=False)
    """Where the tensor's bytes start in the file (absolute, header included)."""
    nbytes: int = field(default=0, compare=False)


def read_header(path: Path) -> dict[str, TensorInfo]:
    """The tensors a safetensors file declares. Raises :class:`HeaderError` if malformed or truncated."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise HeaderError(f"file is {size} bytes, shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES:
            raise HeaderError(f"header length {n} is over the {MAX_HEADER_BYTES}-byte maximum")
        if 8 + n > size:
            raise HeaderError(f"header length {n} runs past the end of the {size}-byte file")
        raw = f.read(n)
    try:
        header: Any = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise HeaderError(f"header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise HeaderError("header is not a JSON object")
    return _tensors(header, data_bytes=size - 8 - n, data_start=8 + n)


def _tensors(header: dict[str, Any], *, data_bytes: int, data_start: int) -> dict[str, TensorInfo]:
    tensors: dict[str, TensorInfo] = {}
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise HeaderError(f"tensor {name!r}: entry is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str):
            raise HeaderError(f"tensor {name!r}: no dtype")
        if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
            raise HeaderError(f"tensor {name!r}: shape {shape!r} is not a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_uint(o) for o in offsets)):
            raise HeaderError(f"tensor {name!r}: data_offsets {offsets!r} is not [start, end]")
        start, end = offsets
        if start > end or end > data_bytes:
            raise HeaderError(
                f"tensor {name!r}: data_offsets [{start}, {end}] lie outside the {data_bytes} data bytes "
                "(truncated file?)"
            )
        itemsize = _ITEMSIZE.get(dtype)
        if itemsize is not None and math.prod(shape) * itemsize != end - start:
            raise HeaderError(
                f"tensor {name!r}: {dtype}{shape} needs {math.prod(shape) * itemsize} bytes, "
                f"data_offsets give {end - start}"
            )
        tensors[name] = TensorInfo(dtype, tuple(shape), offset=data_start + start, nbytes=end - start)
        spans.append((start, end, name))
    # The tensors must tile the data exactly, as the safetensors library requires.
    position = 0
    for start, end, name in sorted(spans):
        if start != position:
            raise HeaderError(f"tensor {name!r} starts at byte {start}, expected {position} (gap or overlap)")
        position = end
    if position != data_bytes:
        raise HeaderError(f"tensors cover {position} data bytes but the file holds {data_bytes}")
    return tensors


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
