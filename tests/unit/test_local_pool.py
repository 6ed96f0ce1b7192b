"""The model pool's cold starts and unloads, with an engine whose loads the test controls."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft.local._errors import ServiceError
from bedrock_ft.local._pool import ModelPool
from bedrock_ft.local.engine import Delta, SamplingParams


class _Model:
    chat_template = None

    def __init__(self) -> None:
        self.closed = False

    def render_chat(self, messages: Sequence[dict[str, Any]]) -> str:
        return ""

    def stream(self, prompt: str, params: SamplingParams) -> Iterator[Delta]:
        yield Delta("", finish_reason="stop")

    def close(self) -> None:
        self.closed = True


class _GatedEngine:
    """load() blocks until the test opens the gate, so the pool can be caught mid-load."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.loaded: list[_Model] = []

    def load(self, model_dir: Path) -> _Model:
        self.gate.wait(10)
        model = _Model()
        self.loaded.append(model)
        return model


def _wait_loaded(pool: ModelPool, model_id: str) -> None:
    for _ in range(1000):
        if pool.is_loaded(model_id):
            return
        threading.Event().wait(0.005)
    raise AssertionError("never loaded")


def test_cold_start_answers_not_ready_then_serves() -> None:
    engine = _GatedEngine()
    pool = ModelPool(engine, cold_start=True, idle_unload_seconds=None)
    with pytest.raises(ServiceError) as caught, pool.use("m", Path()):
        pass
    assert caught.value.code == "ModelNotReadyException" and caught.value.status == 429
    engine.gate.set()
    _wait_loaded(pool, "m")
    with pool.use("m", Path()) as model:
        assert model is engine.loaded[0]
    assert len(engine.loaded) == 1  # one load, however many calls waited for it


def test_a_model_deleted_while_it_loads_is_closed_not_leaked() -> None:
    engine = _GatedEngine()
    pool = ModelPool(engine, cold_start=True, idle_unload_seconds=None)
    with pytest.raises(ServiceError), pool.use("m", Path()):
        pass
    pool.unload("m")  # deleted mid-load
    engine.gate.set()
    for _ in range(1000):
        if engine.loaded and engine.loaded[0].closed:
            break
        threading.Event().wait(0.005)
    assert engine.loaded[0].closed
    assert not pool.is_loaded("m")


def test_a_model_in_use_is_closed_when_its_last_request_ends() -> None:
    engine = _GatedEngine()
    engine.gate.set()
    pool = ModelPool(engine, cold_start=False, idle_unload_seconds=None)
    with pool.use("m", Path()) as model:
        pool.unload("m")
        assert not model.closed  # the request in flight keeps it
    assert model.closed


def test_without_cold_start_a_waiter_learns_the_model_was_deleted() -> None:
    engine = _GatedEngine()
    pool = ModelPool(engine, cold_start=False, idle_unload_seconds=None)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            with pool.use("m", Path()):
                pass
        except ServiceError as exc:
            errors.append(exc)

    waiter = threading.Thread(target=call)
    waiter.start()
    threading.Event().wait(0.05)
    pool.unload("m")
    engine.gate.set()
    waiter.join(5)
    assert [getattr(e, "code", None) for e in errors] == ["ResourceNotFoundException"]


def test_idle_models_are_unloaded() -> None:
    engine = _GatedEngine()
    engine.gate.set()
    pool = ModelPool(engine, cold_start=False, idle_unload_seconds=0.05)
    try:
        with pool.use("m", Path()):
            pass
        for _ in range(400):
            if not pool.is_loaded("m"):
                break
            threading.Event().wait(0.01)
        assert not pool.is_loaded("m")
        assert engine.loaded[0].closed
    finally:
        pool.close()
