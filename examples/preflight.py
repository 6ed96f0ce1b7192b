"""Preflight: would Bedrock Custom Model Import accept this model directory?

Checks the embedded model (or MODEL_DIR), then a broken copy of it, without torch and in milliseconds.

python examples/preflight.py [MODEL_DIR]
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from bedrock_ft.errors import PreflightError
from bedrock_ft.preflight import RULES, PreflightReport, check_model_dir


def show(label: str, report: PreflightReport) -> None:
    verdict = "passes" if report.ok else "refused"
    print(f"{label}: {verdict}, {len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    for finding in report.findings:
        print(f"  {finding}")


def main() -> None:
    if len(sys.argv) > 1:
        model_dir = Path(sys.argv[1])
    else:
        from bedrock_ft.models import embedded_model

        model_dir = embedded_model(progress=lambda step: print(f"[embedded model] {step}"))
    print(f"checking {len(RULES)} rules: {', '.join(rule.id for rule in RULES)}")
    show(model_dir.name, check_model_dir(model_dir))

    with tempfile.TemporaryDirectory() as tmp:
        # A copy that breaks two rules: a pickled weight file, and no chat template.
        broken = Path(tmp) / "broken"
        shutil.copytree(model_dir, broken, ignore=shutil.ignore_patterns("*.safetensors"))
        for weights in model_dir.glob("*.safetensors"):
            (broken / weights.name).symlink_to(weights.resolve())
        (broken / "pytorch_model.bin").write_bytes(b"")
        tokenizer_config = json.loads((broken / "tokenizer_config.json").read_text())
        tokenizer_config.pop("chat_template", None)
        (broken / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
        report = check_model_dir(broken)
        show("broken copy", report)
        try:
            report.raise_for_errors()
        except PreflightError as err:
            print(f"raise_for_errors: {err.findings[0]}")


if __name__ == "__main__":
    main()
