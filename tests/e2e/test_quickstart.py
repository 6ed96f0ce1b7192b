"""The README's quickstart, as a user runs it: the installed `bedrock-ft` console script."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _bedrock_ft() -> str:
    exe = shutil.which("bedrock-ft")
    assert exe, "the bedrock-ft console script is not installed"
    return exe


def test_quickstart_answers_paris(embedded_dir: Path) -> None:
    proc = subprocess.run(
        [_bedrock_ft(), "quickstart"], capture_output=True, text=True, check=False, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    assert "Q: What is the capital of France?" in proc.stdout
    # The dataset step: the seeded synthetic QA set, with its statistics.
    assert "  records: train 240, test 60 (read 300, dropped 0)" in proc.stdout
    assert "tokens per training record: min " in proc.stdout
    # The training step: QLoRA on CPU, and the loss fell.
    line = next(line for line in proc.stdout.splitlines() if line.startswith("fine-tuned: "))
    first, final = (float(x) for x in line.split("loss ")[1].split(",")[0].split(" -> "))
    assert final < 0.5 * first, line
    # The merge step: the adapter merged into the bf16 base, checked, and passing preflight.
    merged = next(line for line in proc.stdout.splitlines() if line.startswith("merged: "))
    assert merged.startswith("merged: bfloat16, ") and merged.endswith("preflight passed"), merged
    answer = next(line for line in proc.stdout.splitlines() if line.startswith("A: "))
    assert "Paris" in answer
    # The complete form: the prompt rendered client-side with the training template gives, greedily,
    # the answer Bedrock gives when it applies the template itself.
    completed = next(line for line in proc.stdout.splitlines() if line.startswith("A (BedrockCompletion"))
    assert completed.split("): ", 1)[1] == answer[len("A: ") :]
    # The evaluation step: base and fine-tuned scored on the held-out split; the fine-tuned one is
    # better on exact match, and the 95% interval of the difference excludes zero.
    lines = proc.stdout.splitlines()
    assert "evaluation: fmeval QA accuracy on the held-out split (eval_dataset)" in lines
    base = next(line for line in lines if line.startswith("  base: exact match "))
    tuned = next(line for line in lines if line.startswith("  fine-tuned: exact match "))
    assert base.endswith("(60 records)") and tuned.endswith("(60 records)")
    em = [float(line.split("exact match ")[1].split(",")[0]) for line in (base, tuned)]
    assert em[1] > em[0], (base, tuned)
    delta = next(line for line in lines if line.startswith("  fine-tuned - base, exact_match_score: "))
    low = float(delta.split("95% CI ")[1].split(" to ")[0])
    assert low > 0, delta
    # The report the evaluation wrote: both models on the same 60 records, the interval as printed.
    html = Path(next(x for x in proc.stderr.splitlines() if x.startswith("report:         ")).split()[-1])
    report = json.loads((html.parent / "report.json").read_text())
    tuned, base_report = report["reports"]["fine-tuned"], report["reports"]["base"]
    assert report["baseline"] == "base" and tuned["dataset_uri"].endswith("eval_dataset.jsonl")
    assert tuned["record_count"] == base_report["record_count"] == 60 and tuned["error_count"] == 0
    assert tuned["model_id"] != base_report["model_id"]
    assert tuned["prompt_template"].startswith("<|im_start|>") and "$model_input" in tuned["prompt_template"]
    exact = report["deltas"]["fine-tuned"]["exact_match_score"]
    assert exact["significant"] and f"{exact['ci_low']:+.3f}" in delta
    assert len((html.parent / "records.jsonl").read_text().splitlines()) == 120
    assert (html.parent / "metrics.png").read_bytes().startswith(b"\x89PNG")
    assert str(embedded_dir) in proc.stderr
    assert "imported as:    arn:aws:bedrock:us-east-1:123456789012:imported-model/" in proc.stderr
    # The import step: BedrockImporter uploaded the merge and the job completed.
    imported = next(line for line in proc.stdout.splitlines() if line.startswith("imported: "))
    assert imported.startswith("imported: llama, 1 CMU per copy, job Completed; upload "), imported
    # The quickstart is a pipeline: a second run finds its stages unchanged and prints the same results.
    # (The JSON test may run in between with another question: only its invoke stage differs.)
    again = subprocess.run(
        [_bedrock_ft(), "quickstart"], capture_output=True, text=True, check=False, timeout=600
    )
    assert again.returncode == 0, again.stderr
    rows = again.stdout.split("stages:\n", 1)[1].splitlines()
    actions = {
        row.split()[0]: row.split()[1] for row in rows if row.startswith("  ") and len(row.split()) > 1
    }
    for stage in ("dataset", "train", "merge", "import", "evaluate"):
        assert actions.get(stage) == "unchanged", again.stdout
    assert next(x for x in again.stdout.splitlines() if x.startswith("A: ")) == answer
    assert delta in again.stdout.splitlines()


def test_quickstart_json(embedded_dir: Path) -> None:
    proc = subprocess.run(
        [
            _bedrock_ft(),
            "quickstart",
            "--json",
            "--no-evaluation",
            "--question",
            "What is the capital of Italy?",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["model_dir"] == str(embedded_dir)
    assert result["question"] == "What is the capital of Italy?"
    # A 135M model is no geographer: check that the question reached it, and that it answered.
    assert result["answer"].strip()
    assert "What is the capital of Italy?" in result["complete"]["prompt"]
    # The answer came through a local Custom Model Import and the Bedrock runtime API.
    assert result["model_arn"].startswith("arn:aws:bedrock:us-east-1:123456789012:imported-model/")
    assert result["s3_uri"] == "s3://bedrock-ft-quickstart/merged/"
    assert result["usage"]["output_tokens"] > 0
    assert result["finish_reason"] in ("stop", "length")
    # ImportedModelClient: chat as OpenAIChatCompletion after a retried cold start, and the complete
    # form with the training template rendered client-side, which answers the same.
    assert result["api_format"] == "OpenAIChatCompletion"
    assert result["cold_start_retries"] >= 1
    assert result["complete"]["api_format"] == "BedrockCompletion"
    assert result["complete"]["prompt"].startswith("<|im_start|>")
    assert result["complete"]["prompt"].endswith("<|im_start|>assistant\n")
    assert result["complete"]["text"] == result["answer"]
    assert result["client_usage"]["requests"] == 2
    assert result["client_usage"]["retries"] == result["cold_start_retries"]
    adapter = result["adapter"]
    assert adapter["kind"] == "adapter" and adapter["quantization"]["quant_type"] == "nf4"
    assert Path(adapter["adapter_dir"], "adapter_model.safetensors").is_file()
    assert adapter["chat_template"] == result["dataset"]["chat_template"]
    # The second quickstart found the finished run and reused it: the run's log has one start. (The
    # session has a cache of its own: no other quickstart on the machine can have touched it.)
    run_log = Path(adapter["adapter_dir"]).parent / "metrics.jsonl"
    starts = [e for e in map(json.loads, run_log.read_text().splitlines()) if e["event"] == "start"]
    assert len(starts) == 1
    # What was imported is the merge of that adapter: exactly the export's files, preflight clean,
    # the trained chat template embedded; the second quickstart reused the cached merge.
    merged = result["merged"]
    assert merged["kind"] == "model" and merged["dtype"] == "bfloat16"
    assert merged["adapter_dir"] == adapter["adapter_dir"]
    checks = merged["merge"]["verification"]
    assert checks["logits"]["max_rel"] <= checks["logits"]["tolerance"]
    assert checks["logits"]["error_vs_effect"] < 0.1  # bf16 keeps the trained adapter's effect
    assert len(checks["weights"]["checked"]) == 5
    names = sorted(f["path"] for f in merged["files"])
    assert names == sorted(p.name for p in Path(merged["model_dir"]).iterdir())
    assert "model.safetensors.index.json" in names and "tokenizer_config.json" in names
    assert not [f for f in merged["preflight"]["findings"] if f["severity"] == "error"]
    tokenizer_config = json.loads(Path(merged["model_dir"], "tokenizer_config.json").read_text())
    assert tokenizer_config["chat_template"] == merged["chat_template"] == adapter["chat_template"]
    # BedrockImporter sent exactly the merge's files, with their sizes, and the job made the model.
    imported = result["imported"]
    assert imported["kind"] == "imported_model" and imported["status"] == "Completed"
    assert imported["model_arn"] == result["model_arn"] and imported["s3_uri"] == result["s3_uri"]
    assert sorted(imported["upload"]["sent"]) == names and imported["upload"]["skipped"] == []
    assert imported["upload"]["bytes_sent"] == merged["total_bytes"]
    assert imported["chat_template"] == merged["chat_template"]
    assert "OpenAIChatCompletion" in imported["api_formats"]
    dataset = result["dataset"]
    assert dataset["record_counts"] == {"train": 240, "test": 60}
    assert dataset["chat_template_name"] == "tokenizer"
    assert Path(dataset["train_uri"]).is_file() and Path(dataset["eval_uri"]).is_file()
    assert "evaluation" not in result  # --no-evaluation: it stopped after the question
