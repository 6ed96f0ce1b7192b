"""Safetensors checkpoints located by header, and a shard writer that hashes as it writes.

Nothing here loads a whole shard: tensors are located by their headers and read in byte ranges, and
the writer takes each tensor as a stream of chunks. Pure Python (no torch), so the shard layout and
the file format are unit-tested on the core install.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bedrock_ft._safetensors import HeaderError, TensorInfo, read_header
from bedrock_ft.errors import MergeError

__all__ = [
    "DTYPE_BYTES",
    "INDEX_NAME",
    "OutTensor",
    "Stored",
    "WrittenFile",
    "index_json",
    "plan_shards",
    "read_checkpoint",
    "read_ranges",
    "shard_name",
    "write_shard",
]

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
}  # fmt: skip


@dataclass(frozen=True)
class Stored:
    """A tensor in a checkpoint file: where its bytes are, not the bytes."""

    name: str
    path: Path
    info: TensorInfo

    @property
    def numel(self) -> int:
        n = 1
        for d in self.info.shape:
            n *= d
        return n


@dataclass(frozen=True)
class OutTensor:
    """A tensor of the output checkpoint: its name, safetensors dtype and shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = DTYPE_BYTES[self.dtype]
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class WrittenFile:
    name: str
    size: int
    sha256: str


def read_checkpoint(model_dir: Path) -> dict[str, Stored]:
    """Every tensor of a safetensors checkpoint (an index and its shards, or one file), in file order
    and, within a file, in storage order. Raises MergeError naming the file that can't be used."""
    index = model_dir / INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            if not all(isinstance(v, str) and "/" not in v for v in weight_map.values()):
                raise TypeError("weight_map values must be file names in the directory")
            files = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MergeError(f"{index}: not a readable safetensors index ({exc})") from None
    elif (model_dir / SINGLE_NAME).is_file():
        files = [SINGLE_NAME]
    else:
        files = sorted(p.name for p in model_dir.glob("*.safetensors"))
    if not files:
        bins = sorted(p.name for p in model_dir.glob("*.bin"))
        hint = (
            f" (it has {', '.join(bins[:3])}: the streaming merge reads safetensors only; use mode='memory', "
            "or convert the base with save_pretrained(safe_serialization=True))"
            if bins
            else ""
        )
        raise MergeError(f"{model_dir}: no .safetensors weights{hint}")
    tensors: dict[str, Stored] = {}
    for name in files:
        path = model_dir / name
        try:
            header = read_header(path)
        except FileNotFoundError:
            raise MergeError(f"{index}: lists {name}, which is not in {model_dir}") from None
        except (HeaderError, OSError) as exc:
            raise MergeError(f"{path}: not a readable safetensors file ({exc})") from None
        for key, info in sorted(header.items(), key=lambda kv: kv[1].offset):
            if info.dtype not in DTYPE_BYTES:
                raise MergeError(
                    f"{path}: tensor {key!r} has dtype {info.dtype}, which the merge can't handle"
                )
            if key in tensors:
                raise MergeError(f"{path}: tensor {key!r} is also in {tensors[key].path.name}")
            tensors[key] = Stored(key, path, info)
    return tensors


def plan_shards(tensors: Iterable[OutTensor], max_bytes: int) -> list[list[OutTensor]]:
    """Split tensors, in order, into shards of at most ``max_bytes`` (a larger tensor gets its own)."""
    shards: list[list[OutTensor]] = []
    size = 0
    for t in tensors:
        if not shards or (size + t.nbytes > max_bytes and shards[-1]):
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += t.nbytes
    return shards


def shard_name(i: int, n: int) -> str:
    """transformers' shard naming: ``model-00001-of-00004.safetensors`` (1-based)."""
    return f"model-{i + 1:05d}-of-{n:05d}.safetensors"


def _header(tensors: list[OutTensor]) -> bytes:
    entries: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for t in tensors:
        entries[t.name] = {
            "dtype": t.dtype,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + t.nbytes],
        }
        offset += t.nbytes
    raw = json.dumps(entries, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the safetensors library aligns the data to 8 bytes the same way
    return len(raw).to_bytes(8, "little") + raw


def write_shard(
    path: Path, tensors: list[OutTensor], chunks: Callable[[OutTensor], Iterable[Any]]
) -> WrittenFile:
    """Write one safetensors file, fsynced, and return its size and sha256 (hashed while written).

    ``chunks(tensor)`` yields each tensor's bytes in order, as bytes-like objects; a tensor whose
    chunks add up to the wrong size raises MergeError before the file is complete.
    """
    digest = hashlib.sha256()
    size = 0
    with path.open("wb") as fh:
        head = _header(tensors)
        fh.write(head)
        digest.update(head)
        size += len(head)
        for t in tensors:
            written = 0
            for chunk in chunks(t):
                view = memoryview(chunk).cast("B")
                fh.write(view)
                digest.update(view)
                written += view.nbytes
            if written != t.nbytes:
                raise MergeError(
                    f"{t.name}: wrote {written} bytes, expected {t.nbytes} for {t.dtype}{list(t.shape)}"
                )
            size += written
        fh.flush()
        os.fsync(fh.fileno())
    return WrittenFile(path.name, size, digest.hexdigest())


def index_json(shards: list[list[OutTensor]], names: list[str]) -> str:
    total = sum(t.nbytes for shard in shards for t in shard)
    weight_map = {t.name: name for shard, name in zip(shards, names, strict=True) for t in shard}
    return json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n"


def read_ranges(path: Path, start: int, length: int, chunk: int, buffer: bytearray) -> Iterator[memoryview]:
    """The bytes ``[start, start+length)`` of a file, ``chunk`` bytes at a time, read into ``buffer``
    (reused: each view is valid until the next one is requested)."""
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as fh:
        fh.seek(start)
        left = length
        while left:
            want = min(chunk, left)
            got = 0
            while got < want:
                n = fh.readinto(view[got:want])
                if not n:
                    raise MergeError(f"{path}: ends early (truncated while merging?)")
                got += n
            left -= want
            yield view[:want]
