"""The merge arithmetic, and the streaming merge that applies it one block of rows at a time.

Both modes call :func:`merged_rows`, so they produce the same bits: ``W + scale * (B @ A)`` computed
in float32 and rounded once to the output dtype. (peft's ``merge_and_unload`` adds a delta already
rounded to the weight's dtype, which rounds twice.)

The streaming merge never holds a shard: each output shard is written by one worker that reads its
tensors from the base files in ``CHUNK_BYTES`` pieces, merges, converts and writes them, hashing as it
goes. Peak memory is the adapter plus a few chunks per worker, whatever the model's size.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bedrock_ft.errors import MergeError
from bedrock_ft.merging._checkpoint import (
    INDEX_NAME,
    OutTensor,
    Stored,
    WrittenFile,
    index_json,
    plan_shards,
    read_ranges,
    shard_name,
    write_shard,
)

if TYPE_CHECKING:
    import torch

    from bedrock_ft.merging._adapter import AdapterPlan, LoraTarget

__all__ = [
    "CHUNK_BYTES",
    "merged_rows",
    "out_dtype_code",
    "torch_dtype",
    "write_checkpoint",
    "write_streaming",
]

CHUNK_BYTES = 16 << 20
Progress = Callable[[int], None]

_CODES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}


def out_dtype_code(dtype: str) -> str:
    return _CODES[dtype]


def torch_dtype(code: str) -> torch.dtype:
    import torch

    table = {
        "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
        "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
        "BOOL": torch.bool,
    }  # fmt: skip
    if code not in table:
        raise MergeError(f"safetensors dtype {code} is not supported by the merge")
    return table[code]


def merged_rows(
    w: torch.Tensor, a: torch.Tensor, b: torch.Tensor, target: LoraTarget, rows: slice | None = None
) -> torch.Tensor:
    """``W[rows] + scale * (B @ A)[rows]`` in float32 (``W`` is the block of stored rows), in one fused
    ``addmm``: the scaled product is added in the GEMM's epilogue, with no delta tensor in memory."""
    import torch

    a, b = a.float(), b.float()
    if target.fan_in_fan_out:  # W is (in, out): its rows are A's columns, so W^T's block is B @ A[:, rows]
        return torch.addmm(w.float().T, b, a if rows is None else a[:, rows], alpha=target.scale).T
    # a float32 copy (never the caller's tensor), updated in place: one block-sized temporary
    return w.to(torch.float32, copy=True).addmm_(b if rows is None else b[rows], a, alpha=target.scale)


def block_rows(stored: Stored) -> int:
    """Rows per merge block: as many stored rows as fit in CHUNK_BYTES. Both modes merge in the same
    blocks, so their float32 sums (and the bytes they write) are the same."""
    rows = stored.info.shape[0] if stored.info.shape else 1
    row_bytes = stored.info.nbytes // max(rows, 1)
    return max(1, CHUNK_BYTES // max(row_bytes, 1))


def merged_blocks(
    w: torch.Tensor, a: torch.Tensor, b: torch.Tensor, target: LoraTarget, per: int
) -> torch.Tensor:
    """:func:`merged_rows` over a whole weight, ``per`` rows at a time (the streaming merge's blocks)."""
    import torch

    return torch.cat(
        [merged_rows(w[i : i + per], a, b, target, slice(i, i + per)) for i in range(0, w.shape[0], per)]
    )


def _as_bytes(t: torch.Tensor) -> Any:
    import torch

    return t.contiguous().reshape(-1).view(torch.uint8).numpy()


def _check_finite(name: str, out: torch.Tensor, code: str) -> None:
    import torch

    if code == "F16" and not bool(torch.isfinite(out).all()):
        raise MergeError(
            f"{name}: merged values overflow float16 (largest float16 is 65504); merge to bfloat16 or "
            "float32 instead (MergeConfig.dtype)"
        )


def _is_float(code: str) -> bool:
    return code in ("F64", "F32", "F16", "BF16")


def output_tensors(base: Mapping[str, Stored], out_code: str) -> list[OutTensor]:
    """The output checkpoint: every base tensor, in order, floats in the output dtype."""
    return [
        OutTensor(name, out_code if _is_float(s.info.dtype) else s.info.dtype, s.info.shape)
        for name, s in base.items()
    ]


def write_checkpoint(
    out_dir: Path,
    tensors: list[OutTensor],
    chunks: Callable[[OutTensor], Iterator[Any]],
    *,
    shard_bytes: int,
    workers: int = 1,
) -> list[WrittenFile]:
    """Write shards (in parallel when ``workers`` > 1) and the index; return every file written."""
    shards = plan_shards(tensors, shard_bytes)
    names = [shard_name(i, len(shards)) for i in range(len(shards))]

    def one(i: int) -> WrittenFile:
        return write_shard(out_dir / names[i], shards[i], chunks)

    parallel = max(1, min(workers, len(shards)))
    with _thread_share(parallel):
        if parallel > 1:
            with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="bedrock-ft-merge") as pool:
                written = list(pool.map(one, range(len(shards))))
        else:
            written = [one(i) for i in range(len(shards))]
    from bedrock_ft._io import sha256_file

    index = out_dir / INDEX_NAME
    index.write_text(index_json(shards, names), encoding="utf-8")
    return [*written, WrittenFile(INDEX_NAME, index.stat().st_size, sha256_file(index))]


def write_streaming(
    base: Mapping[str, Stored],
    plan: AdapterPlan,
    adapter: Mapping[str, torch.Tensor],
    out_dir: Path,
    *,
    dtype: str,
    shard_bytes: int,
    workers: int,
    progress: Progress | None = None,
) -> list[WrittenFile]:
    """Merge tensor by tensor from the base's files into shards under ``out_dir``."""
    import torch

    out_code = out_dtype_code(dtype)
    local = threading.local()
    lock = threading.Lock()

    def buffer() -> bytearray:
        if not hasattr(local, "buf"):
            local.buf = bytearray(CHUNK_BYTES)
        return local.buf  # type: ignore[no-any-return]

    def report(n: int) -> None:
        if progress:
            with lock:
                progress(n)

    def chunks(t: OutTensor) -> Iterator[Any]:
        src = base[t.name]
        info = src.info
        if t.name in plan.targets:
            yield from _merged(src, plan.targets[t.name], t)
        elif t.name in plan.replaced:
            out = adapter[plan.replaced[t.name]].to(torch_dtype(t.dtype))
            _check_finite(t.name, out, t.dtype)
            yield _as_bytes(out)
        elif info.dtype == t.dtype:
            for view in read_ranges(src.path, info.offset, info.nbytes, CHUNK_BYTES, buffer()):
                yield view
                report(len(view))
        else:  # a float tensor changing precision, converted a chunk at a time
            itemsize = info.nbytes // max(src.numel, 1)
            step = max(itemsize, CHUNK_BYTES // itemsize * itemsize)
            for view in read_ranges(src.path, info.offset, info.nbytes, step, buffer()):
                out = torch.frombuffer(view, dtype=torch_dtype(info.dtype)).to(torch_dtype(t.dtype))
                _check_finite(t.name, out, t.dtype)
                yield _as_bytes(out)
                report(len(view))

    def _merged(src: Stored, target: LoraTarget, t: OutTensor) -> Iterator[Any]:
        a, b = adapter[target.a_key], adapter[target.b_key]
        rows_total, cols = src.info.shape
        row_bytes = cols * (src.info.nbytes // max(src.numel, 1))
        per = block_rows(src)
        start = 0
        for view in read_ranges(src.path, src.info.offset, src.info.nbytes, per * row_bytes, buffer()):
            n = len(view) // row_bytes
            w = torch.frombuffer(view, dtype=torch_dtype(src.info.dtype)).view(n, cols)
            out = merged_rows(w, a, b, target, slice(start, start + n)).to(torch_dtype(t.dtype))
            _check_finite(t.name, out, t.dtype)
            yield _as_bytes(out)
            report(len(view))
            start += n
        if start != rows_total:
            raise MergeError(f"{t.name}: read {start} rows, expected {rows_total}")

    return write_checkpoint(
        out_dir, output_tensors(base, out_code), chunks, shard_bytes=shard_bytes, workers=workers
    )


@contextlib.contextmanager
def _thread_share(workers: int) -> Iterator[None]:
    """Each worker's torch ops get their share of the cores: N workers x all cores would oversubscribe.
    (torch's thread count is process-wide: it is restored when the shards are written.)"""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // max(1, workers)))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def default_workers() -> int:
    """Shards written at once: one per core, up to 8 (each holds a few CHUNK_BYTES blocks)."""
    from bedrock_ft._system import usable_cpus

    return max(1, min(8, usable_cpus()))
