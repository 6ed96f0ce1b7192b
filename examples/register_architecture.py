"""Teach bedrock-ft a new model family, with its own preflight rule.

python examples/register_architecture.py
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from bedrock_ft import Architecture, architecture_for_config, get_architecture, register_architecture
from bedrock_ft.errors import RegistryError
from bedrock_ft.preflight import Finding, Severity


def long_context_rule(config: Mapping[str, Any]) -> Iterator[Finding]:
    if config.get("max_position_embeddings", 0) > 65536:
        yield Finding(
            rule="neox-context",
            path="config.json",
            severity=Severity.WARNING,
            message="contexts over 64K were not tested with this family",
        )


def main() -> None:
    try:
        get_architecture("gpt_neox")
    except RegistryError as err:
        print(f"before: {err}")

    register_architecture(
        Architecture(
            name="gpt_neox",
            model_types=("gpt_neox",),
            hf_architectures=("GPTNeoXForCausalLM",),
            description="GPT-NeoX and Pythia.",
            bedrock_supported=False,
            lora_target_modules=("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
            preflight_rules=(long_context_rule,),
        )
    )
    config = {
        "model_type": "gpt_neox",
        "architectures": ["GPTNeoXForCausalLM"],
        "max_position_embeddings": 131072,
    }
    arch = architecture_for_config(config)
    print(f"after: {arch.name} targets {', '.join(arch.lora_target_modules)}")
    for finding in arch.check_config(config):
        print(f"finding: {finding}")

    try:
        register_architecture(Architecture(name="gpt_neox", model_types=("x",), hf_architectures=("X",)))
    except RegistryError as err:
        print(f"refused: {err}")

    # A built-in rule: Bedrock's fixed Llama 3 rope scaling, against Llama 3.2's own.
    llama32 = {
        "model_type": "llama",
        "vocab_size": 128256,
        "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    }  # fmt: skip
    for finding in get_architecture("llama").check_config(llama32):
        print(f"llama 3.2: {finding}")


if __name__ == "__main__":
    main()
