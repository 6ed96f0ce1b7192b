"""Model architectures: what Bedrock accepts, how to fine-tune it and how to invoke it.

Built-in families register themselves below, through the same :func:`register_architecture` call
third parties use. See docs/adding-an-architecture.md.
"""

from __future__ import annotations

from bedrock_ft.architectures._registry import (
    ENTRY_POINT_GROUP,
    ApiFormat,
    Architecture,
    NativeFormat,
    PreflightRule,
    architecture_for_config,
    get_architecture,
    list_architectures,
    register_architecture,
    unregister_architecture,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ApiFormat",
    "Architecture",
    "NativeFormat",
    "PreflightRule",
    "architecture_for_config",
    "get_architecture",
    "list_architectures",
    "register_architecture",
    "unregister_architecture",
]

# Built-ins. Each module registers its families when imported.
from bedrock_ft.architectures import (  # noqa: F401
    flan_t5,
    gpt_bigcode,
    gpt_oss,
    llama,
    mistral,
    mixtral,
    qwen2,
    qwen3,
)
