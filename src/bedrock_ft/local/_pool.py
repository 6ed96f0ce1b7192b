"""Loaded models, cold starts and scale-to-zero.

Bedrock unloads an imported model that has been idle, and the next call gets
``ModelNotReadyException`` while the model is restored. The pool does the same: with ``cold_start``
on, a call for an unloaded model starts a background load and answers 429 at once; callers retry.
A reaper thread unloads models idle longer than ``idle_unload_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bedrock_ft.local._errors import ServiceError
from bedrock_ft.local.engine import InferenceEngine, LoadedModel

__all__ = ["NOT_READY_MESSAGE", "ModelPool"]

log = logging.getLogger("bedrock_ft.local")

NOT_READY_MESSAGE = "Model is not ready for inference. Wait and try your request again."


@dataclass
class _Slot:
    model: LoadedModel | None = None
    loading: threading.Event | None = None
    error: str | None = None
    last_used: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    load_seconds: float | None = None
    retiring: bool = False
    """Removed from the pool while loading or in use: closed when the last request lets go."""


class ModelPool:
    def __init__(
        self,
        engine: InferenceEngine,
        *,
        cold_start: bool,
        idle_unload_seconds: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.cold_start = cold_start
        self.idle_unload_seconds = idle_unload_seconds
        self._clock = clock
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None
        if idle_unload_seconds is not None:
            self._reaper = threading.Thread(target=self._reap, name="local-bedrock-reaper", daemon=True)
            self._reaper.start()

    @contextmanager
    def use(self, model_id: str, model_dir: Path) -> Iterator[LoadedModel]:
        """The loaded model, for the duration of one request. Raises ModelNotReadyException when cold."""
        slot, model = self._acquire(model_id, model_dir)
        try:
            yield model
        finally:
            with self._lock:
                slot.in_flight -= 1
                slot.last_used = self._clock()
                close = slot.retiring and slot.in_flight == 0
            if close:
                model.close()

    def is_loaded(self, model_id: str) -> bool:
        with self._lock:
            slot = self._slots.get(model_id)
            return slot is not None and slot.model is not None

    def load_seconds(self, model_id: str) -> float | None:
        with self._lock:
            slot = self._slots.get(model_id)
            return None if slot is None else slot.load_seconds

    def unload(self, model_id: str) -> None:
        """Forget a model. A load in progress, or requests still using it, close it when they finish."""
        with self._lock:
            slot = self._slots.pop(model_id, None)
            if slot is None:
                return
            slot.retiring = True
            model = slot.model if slot.in_flight == 0 else None
        if model is not None:
            model.close()

    def close(self) -> None:
        self._stop.set()
        if self._reaper is not None:
            self._reaper.join(timeout=5)
        for model_id in list(self._slots):
            self.unload(model_id)

    # --- internals ---------------------------------------------------------------------------------

    def _acquire(self, model_id: str, model_dir: Path) -> tuple[_Slot, LoadedModel]:
        with self._lock:
            slot = self._slots.setdefault(model_id, _Slot())
            if slot.model is not None:
                slot.in_flight += 1
                slot.last_used = self._clock()
                return slot, slot.model
            if slot.error is not None:
                error, slot.error = slot.error, None  # report once; the next call loads again
                raise ServiceError("ModelErrorException", f"The model failed to load: {error}")
            if slot.loading is None:
                slot.loading = threading.Event()
                threading.Thread(
                    target=self._load, args=(model_id, model_dir, slot), name=f"load-{model_id}", daemon=True
                ).start()
            loading = slot.loading
        if self.cold_start:
            raise ServiceError("ModelNotReadyException", NOT_READY_MESSAGE)
        loading.wait()
        with self._lock:
            if self._slots.get(model_id) is not slot:
                raise ServiceError("ResourceNotFoundException", f"The model {model_id} was deleted.")
        return self._acquire(model_id, model_dir)

    def _load(self, model_id: str, model_dir: Path, slot: _Slot) -> None:
        started = time.perf_counter()
        try:
            model = self.engine.load(model_dir)
        except Exception as exc:
            log.exception("loading %s failed", model_id)
            with self._lock:
                slot.error = f"{type(exc).__name__}: {exc}"
                event, slot.loading = slot.loading, None
        else:
            with self._lock:
                slot.model = model
                slot.load_seconds = time.perf_counter() - started
                slot.last_used = self._clock()
                event, slot.loading = slot.loading, None
                orphaned = slot.retiring  # deleted or unloaded while it loaded
            if orphaned:
                model.close()
            else:
                log.info("loaded %s in %.2f s", model_id, slot.load_seconds)
        if event is not None:
            event.set()

    def _reap(self) -> None:
        assert self.idle_unload_seconds is not None
        interval = min(max(self.idle_unload_seconds / 4, 0.05), 5.0)
        while not self._stop.wait(interval):
            cutoff = self._clock() - self.idle_unload_seconds
            with self._lock:
                idle = [
                    (model_id, self._slots.pop(model_id))
                    for model_id, slot in list(self._slots.items())
                    if slot.model is not None and slot.in_flight == 0 and slot.last_used < cutoff
                ]
            for model_id, slot in idle:
                log.info("unloading %s after %.0f s idle", model_id, self.idle_unload_seconds)
                if slot.model is not None:
                    slot.model.close()
