"""QLoRATrainer: QLoRA (or plain LoRA) supervised fine-tuning with trl's SFTTrainer.

The configs import without torch; the trainer imports torch, transformers, peft and trl when it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bedrock_ft.training._config import TRAIN_LAYOUT, QLoRAConfig, TrainingConfig
from bedrock_ft.training._rundir import RunMismatchError
from bedrock_ft.training._sagemaker_config import SageMakerConfig
from bedrock_ft.training._sm_watch import SageMakerJob

if TYPE_CHECKING:
    from bedrock_ft.training._trainer import QLoRATrainer

__all__ = [
    "TRAIN_LAYOUT",
    "QLoRAConfig",
    "QLoRATrainer",
    "RunMismatchError",
    "SageMakerConfig",
    "SageMakerJob",
    "TrainingConfig",
]


def __getattr__(name: str) -> Any:
    if name == "QLoRATrainer":
        from bedrock_ft.training._trainer import QLoRATrainer

        return QLoRATrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
