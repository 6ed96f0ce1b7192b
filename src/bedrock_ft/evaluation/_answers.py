"""Answers already paid for, kept across runs: an evaluation that stops (a crash, Ctrl-C, an expired
credential) resumes where it stopped instead of asking the model again.

Each answer is appended to ``answers.jsonl`` in the output directory as it arrives, keyed by the model,
the exact prompt and the generation settings; a later run with the same three reuses it. Failures are
not kept, so a resumed run asks again. Only models with a stable identity (an imported model's ARN) are
cached: a plain callable may change between runs under the same name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

__all__ = ["AnswerCache"]

log = logging.getLogger("bedrock_ft")

FILE = "answers.jsonl"


def _key(model_id: str, prompt: str, params: dict[str, Any]) -> str:
    text = json.dumps([model_id, prompt, params], sort_keys=True, default=list)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class AnswerCache:
    def __init__(self, directory: str | Path, model_id: str, params: dict[str, Any]) -> None:
        self.path = Path(directory) / FILE
        self.model_id, self.params = model_id, params
        self._lock = threading.Lock()
        self._known: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            text = self.path.read_text("utf-8")
            for number, line in enumerate(text.splitlines(), start=1):
                try:
                    entry = json.loads(line)
                    self._known[entry["key"]] = entry
                except (ValueError, KeyError, TypeError):  # a line cut short by a crash: ask again
                    log.debug("%s line %d unreadable; that answer will be asked again", self.path, number)
            if text and not text.endswith("\n"):  # drop the cut line, so new answers start on their own
                from bedrock_ft._io import atomic_write_text

                atomic_write_text(self.path, "".join(json.dumps(e) + "\n" for e in self._known.values()))

    def get(self, prompt: str) -> dict[str, Any] | None:
        return self._known.get(_key(self.model_id, prompt, self.params))

    def put(self, prompt: str, text: str, latency_s: float | None, output_tokens: int | None) -> None:
        entry: dict[str, Any] = {
            "key": _key(self.model_id, prompt, self.params),
            "model_id": self.model_id,
            "text": text,
            "latency_s": latency_s,
            "output_tokens": output_tokens,
        }
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:  # one whole line per write
                fh.write(json.dumps(entry) + "\n")
            self._known[entry["key"]] = entry
