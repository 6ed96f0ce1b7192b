"""The embedded model: fetch SmolLM2-135M-Instruct once, then ask it something.

python examples/embedded_model.py "What is the capital of France?"
"""

from __future__ import annotations

import sys

from bedrock_ft.models import chat_generate, embedded_model


def main() -> None:
    question = sys.argv[1] if len(sys.argv) > 1 else "What is the capital of France?"
    model_dir = embedded_model(progress=lambda step: print(f"[embedded model] {step}"))
    print(f"model directory: {model_dir}")
    answer = chat_generate(model_dir, [{"role": "user", "content": question}], max_new_tokens=32)
    print(f"Q: {question}\nA: {answer}")


if __name__ == "__main__":
    main()
