"""Every example imports and parses its arguments (fast, in the main suite); and, in the ``examples``
session (``nox -s examples``, before a release), runs offline and prints what its docstring promises.

The full runs repeat paths the integration tests cover, with the embedded model; they take minutes.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXPECTED = {
    "01_dataset_openorca.py": [
        "records: train 55, test 16 (read 4000, dropped 2403)",
        "dropped id_filter: 2403 (e.g. record 0, field 'id': id 'niv.0' does not contain 'flan')",
        "chat template: human_assistant",
        "files: eval_dataset.jsonl, manifest.json, test_dataset.json, train_dataset.json",
    ],
    "02_train_qlora.py": [
        "dataset: 160 training records, template tokenizer",
        "steps: 8, loss ",
        "LoRA: r=16 alpha=32.0 dropout=0.0",
        '"quant_type": "nf4"',
        "chat template saved with the adapter: True",
        "loss fell: True",
    ],
    "sagemaker_training.py": [
        "training job: arn:aws:sagemaker:us-east-1:123456789012:training-job/bedrock-ft-",
        "merged model in S3: s3://bedrock-ft-example/training/bedrock-ft-",
        "imported: arn:aws:bedrock:",
        "answer: ",
    ],
    "pipeline.py": [
        "records: {'train': 64, 'test': 16}",
        "answer: '",
        "stages run again: []",
        "stages run again: ['train', 'merge', 'import', 'invoke', 'answer_length']",
    ],
    "train_multi_process.py": [
        "launching DDP on 2 CPU processes (gloo)",
        "ranks: 2, strategy ddp, steps 4",
        "loss fell: True",
        "ranks trained on different batches: True",
    ],
    "merge_adapter.py": [
        "merged (memory): 134,515,008 parameters, bfloat16",
        "files: config.json, generation_config.json, model-00001-of-00001.safetensors, "
        "model.safetensors.index.json, tokenizer.json, tokenizer_config.json",
        "weights check: 5 tensors within one bfloat16 rounding of peft's merge",
        "logits check: max relative difference ",
        "preflight: passes",
        "chat template embedded: True",
        "streaming merge writes the same bytes: True",
        "reloaded with transformers, it answers: '",
    ],
    "embedded_model.py": ["A: The capital of France is Paris."],
    "03_import.py": [
        "import role: arn:aws:iam::123456789012:role/BedrockModelImport",
        "imported: smollm2-example -> arn:aws:bedrock:us-east-1:123456789012:imported-model/",
        "architecture: llama, 1 CMU per copy",
        "invoke formats: BedrockCompletion, OpenAICompletion, OpenAIChatCompletion, Converse",
        "again: same model True, files sent 0",
        "refused: an imported model named 'smollm2-example' already exists",
        "preflight on a missing directory: model-dir",
        "one hour active at $0.0785/CMU-minute: $4.71 (12 windows)",
        "deleted: smollm2-example and 9 S3 objects",
    ],
    "05_evaluate.py": [
        "as-is: exact match 0.000, quasi-exact 0.000, F1 ",
        "told to be terse - as-is, f1_score: ",
        "records: 30, engine: fast",
        "prompt template: '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM",
        "  qa/capitals: exact match ",
        "a worst answer: ",
        "files: metrics.png, records.jsonl, report.html, report.json, report.md",
    ],
    "04_invoke.py": [
        "model: smollm2-invoke, formats: BedrockCompletion, OpenAICompletion, OpenAIChatCompletion, Converse",
        "chat (OpenAIChatCompletion): The capital of France is Paris.",
        "  finish stop, 37 tokens in, 7 out",
        "complete (OpenAICompletion, max_tokens=5): 'The capital of France is', finish length",
        "stream: 7 chunks: The capital of France is Paris.",
        "converse: The capital of France is Paris.",
        "structured: Capital(city='Paris', country='FRANCE')",  # the schema's shape, the model's words
        "logprobs: 7 tokens, least sure of 'The'",
        "tools: refused: InvokeModel: ValidationException: Malformed input request: this model does not "
        "support tool calling",
        "batch: all 40 answered: True, in input order: True, ",
        "  throttled and retried: True (",
        "  France -> The capital of France is Paris.",
        "async: 1 distinct answer(s) to 3 identical questions",
        "refused: complete(): the prompt is empty",
        "refused: chat(): invalid parameter(s): temperature: Input should be less than or equal to 2 (got 5)",
        "refused: chat(): messages[0].role must be one of system, user, assistant, tool, got 'robot'",
        "refused: complete(): OpenAIChatCompletion takes messages, not a prompt: call chat()",
    ],
    "register_architecture.py": [
        "before: unknown architecture 'gpt_neox'",
        "after: gpt_neox targets query_key_value",
        "neox-context",
        "refused: architecture 'gpt_neox' is already registered",
        "llama3-rope-override",
    ],
    "configs_and_artifacts.py": [
        "loaded: flan lr=0.0001",
        "training.learning_rate",
        "training.max_step: unknown key; did you mean 'max_steps'?",
        "read back a DatasetArtifact, equal: True",
    ],
    "aws_clients.py": [
        "objects: ['hello.txt']",
        "translated: ResourceNotFoundError (service code NoSuchKey)",
    ],
    "local_bedrock.py": [
        "import job: Completed",
        "architecture: llama, instruct: True",
        "OpenAIChatCompletion: The capital of France is Paris.",
        "BedrockCompletion: The capital of France is Paris. (stop_reason=stop)",
        "OpenAICompletion, max_tokens=3: finish_reason=length",
        "chunks: The capital of France is Paris.",
        "Converse: The capital of France is Paris. (end_turn)",
        "refused: 1 validation error detected: Value 'bad name!' at 'jobName'",
    ],
    "preflight.py": [
        "smollm2-135m-instruct: passes, 0 error(s), 0 warning(s)",
        "broken copy: refused, 1 error(s), 1 warning(s)",
        "[warning] chat-template (tokenizer_config.json)",
        "raise_for_errors: [error] safetensors-only (pytorch_model.bin)",
    ],
}


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_imports_and_parses_its_arguments(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its imports resolve against the public API, it runs nothing when imported, and its command line
    (where it has one) parses: --help prints the usage and the docstring and exits 0."""
    path = EXAMPLES / name
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the top level only: main() runs under __main__
    assert callable(module.main) and module.__doc__
    if "argparse" not in path.read_text(encoding="utf-8"):
        return
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    with pytest.raises(SystemExit) as exited:
        module.main()
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and module.__doc__.strip().splitlines()[0] in out


@pytest.mark.examples
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str, embedded_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    for text in EXPECTED[name]:
        assert text in proc.stdout, f"{text!r} not in output of {name}:\n{proc.stdout}"
