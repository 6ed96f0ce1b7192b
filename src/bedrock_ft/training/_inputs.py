"""What a run trains on, read and identified before anything loads: records, tokenizer, run identity."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from bedrock_ft.artifacts import DatasetArtifact
from bedrock_ft.errors import TrainingError
from bedrock_ft.training._config import QLoRAConfig, TrainingConfig

__all__ = ["as_hf_dataset", "load_tokenizer", "read_dataset_input", "run_info"]


def read_dataset_input(dataset: DatasetArtifact | str | os.PathLike[str] | Any) -> Any:
    """A DatasetArtifact (or the path of one), a ``datasets.Dataset``, or the directory a Dataset was
    saved to with ``save_to_disk`` (how the launcher hands an in-memory dataset to its ranks)."""
    if not isinstance(dataset, str | os.PathLike):
        return dataset
    path = Path(dataset)
    if path.is_dir() and (path / "state.json").is_file() and (path / "dataset_info.json").is_file():
        from datasets import load_from_disk

        return load_from_disk(str(path))
    # a path without a manifest: read() says so
    return DatasetArtifact.from_input(dataset) or DatasetArtifact.read(os.fspath(dataset))


def run_info(
    *,
    qlora: QLoRAConfig,
    training: TrainingConfig,
    artifact: DatasetArtifact | None,
    records: list[dict[str, Any]] | None,
    dataset: Any,
    model_path: str,
) -> dict[str, Any]:
    """What decides the run's result; its hash tells a resumable run from a different one."""
    if artifact is not None and records is not None:
        digest = hashlib.sha256()
        for record in records:  # content, not paths or timestamps: a rebuilt identical dataset matches
            digest.update(json.dumps(record, sort_keys=True).encode())
        digest.update((artifact.chat_template or "").encode())
        data_id: dict[str, Any] = {"train_uri": artifact.train_uri, "records": len(records),
                                   "sha256": digest.hexdigest()}  # fmt: skip
    else:  # a datasets.Dataset: its content (its fingerprint changes when it is saved and loaded again)
        digest = hashlib.sha256()
        for row in dataset:
            digest.update(json.dumps(row, sort_keys=True, default=str).encode())
        data_id = {"in_memory": digest.hexdigest()[:16], "rows": len(dataset)}
    info = {
        "qlora": qlora.model_dump(mode="json"),
        "training": training.model_dump(mode="json", exclude=set(TrainingConfig.hash_exclude)),
        "dataset": data_id,
        "base_model_path": model_path,
    }
    identity = {"qlora": info["qlora"], "training": info["training"], "data": data_id.get("sha256", data_id)}
    blob = json.dumps(identity, sort_keys=True)
    info["run_hash"] = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return info


def load_tokenizer(model_path: str, artifact: DatasetArtifact | None) -> tuple[Any, str | None]:
    """The base's tokenizer with the chat template the dataset was built with (else its own)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"base_model {model_path}: can't load its tokenizer: {exc}") from exc
    template = artifact.chat_template if artifact is not None else None
    if template:
        tokenizer.chat_template = template  # train with the template the dataset was built with
    else:
        own = tokenizer.chat_template
        template = own.get("default") if isinstance(own, dict) else own
    if artifact is not None and not template:
        raise TrainingError(
            "neither the dataset nor the base model's tokenizer has a chat template; rebuild the dataset "
            "with chat_template set (e.g. 'chatml')"
        )
    return tokenizer, template


def as_hf_dataset(records: list[dict[str, Any]] | None, dataset: Any) -> Any:
    if records is not None:
        from datasets import Dataset

        return Dataset.from_list(records)
    columns = getattr(dataset, "column_names", None)
    if not columns or not ({"messages", "input_ids"} & set(columns)):
        raise TrainingError(
            "train() takes a DatasetArtifact, its manifest path, or a datasets.Dataset with a 'messages' "
            f"or 'input_ids' column (got {type(dataset).__name__} with columns {columns})"
        )
    return dataset
