"""Pipeline: the stages of one config, in order, each skipped while its settings and input are unchanged."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from bedrock_ft._io import atomic_write_text
from bedrock_ft.errors import ConfigError, ConfigProblem, PipelineError
from bedrock_ft.pipeline._config import PipelineConfig
from bedrock_ft.pipeline._result import PipelineRun, PlannedStage, load_output
from bedrock_ft.pipeline._services import RunServices
from bedrock_ft.pipeline._stages import (
    BUILTIN,
    NEEDS,
    STAGE_DIRS,
    STILL_VALID,
    StageContext,
    StageFunction,
    default_section_hash,
    summarize,
)
from bedrock_ft.pipeline._state import (
    RssSampler,
    RunState,
    StageRecord,
    elapsed,
    fingerprint,
    hash_text,
    now,
    run_lock,
)

__all__ = ["Pipeline"]

Say = Callable[[str], None]

# An input given in the config stands for the output of this stage.
_GIVEN = {"dataset": "dataset", "train": "adapter", "merge": "model"}


class Pipeline:
    """Run a :class:`PipelineConfig`: dataset -> train -> merge -> import -> invoke -> evaluate.

    Every stage writes into ``config.run_dir``, and ``run.json`` there records each stage's config hash,
    input fingerprint, output, duration and status. A re-run skips a stage whose settings and input are
    unchanged and whose output is still there; it redoes the first changed stage and every one after
    it, saying why. A run killed at any point resumes: finished stages are kept, an interrupted training
    run continues from its last checkpoint (a SageMaker job still running is re-attached), and an
    interrupted upload sends only what S3 lacks.

    ``stages`` replaces built-in stage functions (``{"dataset": my_dataset}``), and :meth:`add_stage`
    adds new ones; a stage function takes a :class:`~bedrock_ft.pipeline.StageContext`.
    """

    def __init__(
        self,
        config: PipelineConfig,
        *,
        stages: Mapping[str, StageFunction] | None = None,
        progress: Say | None = None,
    ) -> None:
        self.config = config
        self.run_dir = Path(config.run_dir).expanduser().resolve()
        self._say: Say = progress or (lambda message: None)
        unknown = sorted(set(stages or {}) - set(BUILTIN))
        if unknown:
            raise PipelineError(
                f"unknown stage(s) {', '.join(unknown)}: replace one of {', '.join(BUILTIN)}, "
                "or use add_stage"
            )
        self._functions: dict[str, StageFunction] = {**BUILTIN, **(stages or {})}
        builtin_dataset = self._functions["dataset"] is BUILTIN["dataset"]
        no_records = config.dataset is not None and not config.dataset.source and not config.synthetic
        if builtin_dataset and no_records:
            missing = "missing: where the raw records come from (or use synthetic)"
            raise ConfigError([ConfigProblem("dataset.source", missing)])
        self._order: list[str] = config.enabled()
        self._needs: dict[str, tuple[str, ...]] = dict(NEEDS)
        if config.evaluate is not None and config.evaluate.compare_base:
            self._needs["evaluate"] = ("import", "dataset", "train")
        self._services = RunServices(config, self.run_dir, self._say)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> Pipeline:
        return cls(PipelineConfig.from_file(path), **kwargs)

    # --- composing ---------------------------------------------------------------------------------

    @property
    def stages(self) -> list[str]:
        """The stages this pipeline runs, in order."""
        return list(self._order)

    def add_stage(
        self, name: str, function: StageFunction, *, after: str, needs: Iterable[str] = ()
    ) -> Pipeline:
        """Run ``function`` after stage ``after``; ``needs`` names the stages whose outputs it reads
        (a change in any of them redoes it)."""
        if name in self._functions:
            raise PipelineError(f"stage {name!r} exists already: pass it in stages= to replace it")
        if after not in self._order:
            raise PipelineError(f"add_stage({name!r}): no stage {after!r} in {', '.join(self._order)}")
        missing = [n for n in needs if n not in self._order]
        if missing:
            raise PipelineError(
                f"add_stage({name!r}): it needs {', '.join(missing)}, which this pipeline lacks"
            )
        self._functions[name] = function
        self._needs[name] = tuple(needs)
        self._order.insert(self._order.index(after) + 1, name)
        return self

    # --- inspecting --------------------------------------------------------------------------------

    def state(self) -> RunState:
        """run.json as it is now."""
        return RunState.load(self.run_dir, self.config.name)

    def output(self, stage: str) -> Any:
        """A finished stage's output, read back from the run directory."""
        record = self.state().stages.get(stage)
        if record is None or record.output is None or record.status not in ("completed", "skipped"):
            raise PipelineError(f"stage {stage!r} has not completed in {self.run_dir}", stage=stage)
        return load_output(record.output)

    def plan(self, *, from_stage: str | None = None, only: str | None = None) -> list[PlannedStage]:
        """What :meth:`run` would do with each stage, and why (``--dry-run``)."""
        return self._plan(self.state(), from_stage=from_stage, only=only)

    # --- running -----------------------------------------------------------------------------------

    def run(self, *, from_stage: str | None = None, only: str | None = None) -> PipelineRun:
        """Run the pipeline. ``from_stage`` redoes that stage and every one after it; ``only`` runs that
        one stage (the stages before it must have finished). Ctrl-C stops cleanly: run.json says what
        completed, and the next run resumes."""
        self._services.check_target()
        with run_lock(self.run_dir, self._say):
            state = RunState.load(self.run_dir, self.config.name)
            plan = self._plan(state, from_stage=from_stage, only=only)
            result = PipelineRun(self.run_dir, state, plan=plan)
            state.config = json.loads(json.dumps(self.config.to_dict(), default=str))
            state.status, state.started_at = "running", now()
            start = time.monotonic()
            try:
                for step in plan:
                    self._step(step, state, result)
                state.status = "completed"
            except KeyboardInterrupt:
                state.status = "interrupted"
                done = [s for s, r in state.stages.items() if r.status in ("completed", "skipped")]
                self._say(
                    f"interrupted; completed: {', '.join(done) or 'nothing'}. Run the same command again to "
                    "resume."
                )
                raise
            except BaseException:
                state.status = "failed"
                raise
            finally:
                state.seconds = elapsed(start)
                state.save(self.run_dir)
                self._services.stop()
            return result

    def _step(self, step: PlannedStage, state: RunState, result: PipelineRun) -> None:
        stage = step.stage
        if step.action == "given":
            result.outputs[stage] = self._given(stage)
            return
        record = state.stages.get(stage)
        if step.action == "keep":  # --from / --only: an earlier stage, taken as it is
            assert record is not None and record.output is not None
            result.outputs[stage] = load_output(record.output)
            return
        if step.action == "skip":
            # A plan is made before anything runs: an earlier stage redone since changes this one's input.
            reason = self._why_run(stage, state)
            if reason is None:
                assert record is not None and record.output is not None
                value = load_output(record.output)
                reason = self._still_valid(stage, value, record, result)
            if reason is None:
                assert record is not None
                result.outputs[stage] = value
                record.status, record.reason = "skipped", "unchanged"
                self._say(f"stage {stage}: unchanged, skipped")
                return
            step = PlannedStage(stage, "run", reason)
        self._say(f"stage {stage}: {step.reason}")
        previous = record.model_copy() if record is not None else None
        ctx = self._context(stage, previous, result)
        record = StageRecord(
            status="running",
            config_hash=self._config_hash(stage),
            input_hash=self._input_hash(stage, state),
            started_at=now(),
            reason=step.reason,
            # What the stage last made, until it makes something new (an import redone after a kill
            # still knows the model this run imported before).
            summary=dict(previous.summary) if previous is not None else {},
        )
        state.stages[stage] = record
        state.save(self.run_dir)
        start = time.monotonic()
        with RssSampler() as rss:
            try:
                value = self._functions[stage](ctx)
            except KeyboardInterrupt:
                record.status = "interrupted"
                raise
            except BaseException as exc:
                record.status, record.error = "failed", f"{type(exc).__name__}: {exc}"
                raise
            finally:
                record.seconds, record.peak_rss_mb = elapsed(start), rss.peak_mb
                state.save(self.run_dir)
        record.output = self._store(stage, value)
        record.output_hash = fingerprint(record.output)
        record.summary = summarize(stage, value)
        record.status = "completed"
        state.save(self.run_dir)
        result.outputs[stage] = value

    def _context(self, stage: str, previous: StageRecord | None, result: PipelineRun) -> StageContext:
        return StageContext(
            name=stage,
            config=self.config,
            run_dir=self.run_dir,
            say=self._say,
            previous=previous,
            outputs=result.outputs,
            _services=self._services.aws,
        )

    def _still_valid(self, stage: str, value: Any, record: StageRecord, result: PipelineRun) -> str | None:
        """A skipped built-in stage whose output lives outside the run directory (an imported model) is
        checked when a later stage of this run reads it."""
        check = STILL_VALID.get(stage)
        if check is None or self._functions[stage] is not BUILTIN[stage]:
            return None
        if not any(s.action == "run" and stage in self._upstream(s.stage) for s in result.plan):
            return None  # nothing in this run reads it
        return check(self._context(stage, record, result), value)

    # --- deciding ----------------------------------------------------------------------------------

    def _plan(self, state: RunState, *, from_stage: str | None, only: str | None) -> list[PlannedStage]:
        order = self._order
        for flag, value in (("--from", from_stage), ("--only", only)):
            if value is not None and value not in order:
                raise PipelineError(f"{flag} {value}: this pipeline's stages are {', '.join(order)}")
        if from_stage and only:
            raise PipelineError("give --from or --only, not both")
        plan: list[PlannedStage] = [
            PlannedStage(s, "given", f"from inputs.{_GIVEN[s]}") for s in self._given_stages()
        ]
        redone: str | None = None
        start = order.index(from_stage) if from_stage else 0
        for i, stage in enumerate(order):
            record = state.stages.get(stage)
            finished = record is not None and record.status in ("completed", "skipped") and record.output
            if (only and stage != only) or i < start:
                if not finished and self._needed_by(stage, only or from_stage):
                    raise PipelineError(
                        f"stage {stage} has not finished in {self.run_dir}: run it first (without "
                        f"{'--only' if only else '--from'})",
                        stage=stage,
                    )
                if finished:
                    plan.append(PlannedStage(stage, "keep", "taken as it is"))
                continue
            if stage in (only, from_stage):
                plan.append(
                    PlannedStage(stage, "run", f"asked for ({'--only' if only else '--from'} {stage})")
                )
                redone = stage
                continue
            reason = self._why_run(stage, state, upstream_redone=redone)
            if reason is None:
                plan.append(PlannedStage(stage, "skip", "unchanged"))
            else:
                plan.append(PlannedStage(stage, "run", reason))
                redone = stage
        return plan

    def _needed_by(self, stage: str, target: str | None) -> bool:
        if target is None:
            return False
        todo, seen = [target], set()
        while todo:
            current = todo.pop()
            for need in self._needs.get(current, ()):
                if need not in seen:
                    seen.add(need)
                    todo.append(need)
        return stage in seen

    def _why_run(self, stage: str, state: RunState, *, upstream_redone: str | None = None) -> str | None:
        """Why ``stage`` must run, or None when its last output still stands."""
        record = state.stages.get(stage)
        if record is None:
            return "not run yet"
        if record.status not in ("completed", "skipped") or record.output is None:
            return f"its last run was {record.status}: running it again"
        if record.config_hash != self._config_hash(stage):
            return "its settings changed since the last run"
        if upstream_redone is not None and upstream_redone in self._upstream(stage):
            return f"its input changes ({upstream_redone} runs first)"
        if record.input_hash != self._input_hash(stage, state):
            needs = ", ".join(self._needs.get(stage, ())) or "its source"
            return f"its input changed since the last run ({needs})"
        current = fingerprint(record.output)
        if current is None:
            return f"its output {record.output} is gone"
        if current != record.output_hash:
            return f"its output {record.output} changed since it was written"
        return None

    def _upstream(self, stage: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self._needs.get(stage, ()))
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo += self._needs.get(current, ())
        return seen

    def _config_hash(self, stage: str) -> str:
        base = default_section_hash(self.config, stage) if stage in BUILTIN else hash_text(stage)
        function = self._functions[stage]
        if function is not BUILTIN.get(stage):  # a user's function: its code is part of its settings
            try:
                code = inspect.getsource(function)
            except (OSError, TypeError):
                code = getattr(function, "__qualname__", repr(function))
            base = hash_text(base, code)
        return base

    def _input_hash(self, stage: str, state: RunState) -> str:
        """Fingerprints of what the stage reads: the outputs of the stages it needs, as they are now."""
        parts = [f"{need}={self._output_fingerprint(need, state)}" for need in self._needs.get(stage, ())]
        if stage == "dataset" and self.config.dataset is not None and self.config.dataset.source:
            source = self.config.dataset.source
            parts.append(f"source={fingerprint(source) if Path(source).exists() else source}")
        return hash_text(stage, *parts)

    def _output_fingerprint(self, stage: str, state: RunState) -> str:
        if stage in self._given_stages():
            return str(fingerprint(self._given_path(stage)))
        record = state.stages.get(stage)
        return str(fingerprint(record.output if record is not None else None))

    # --- inputs ------------------------------------------------------------------------------------

    def _given_stages(self) -> list[str]:
        inputs = self.config.inputs
        given = {"dataset": inputs.dataset, "train": inputs.adapter, "merge": inputs.model}
        return [s for s, v in given.items() if v is not None and s not in self._order]

    def _given_path(self, stage: str) -> str:
        inputs = self.config.inputs
        value = {"dataset": inputs.dataset, "train": inputs.adapter, "merge": inputs.model}[stage]
        assert value is not None
        if value.startswith("s3://"):
            return value
        path = Path(value).expanduser()
        if not path.exists():
            raise PipelineError(f"inputs.{_GIVEN[stage]}: {value}: no such file or directory", stage=stage)
        return str(path.resolve())

    def _given(self, stage: str) -> Any:
        from bedrock_ft.artifacts import Artifact

        path = self._given_path(stage)
        if path.startswith("s3://"):
            return path
        manifest = Path(path) / "manifest.json" if Path(path).is_dir() else Path(path)
        if manifest.name == "manifest.json" and manifest.is_file():
            return Artifact.read(manifest)
        return path

    # --- outputs -----------------------------------------------------------------------------------

    def _store(self, stage: str, value: Any) -> str:
        """Write a stage's output into its directory; returns the file."""
        from bedrock_ft.artifacts import Artifact

        directory = self.run_dir / STAGE_DIRS.get(stage, stage)
        directory.mkdir(parents=True, exist_ok=True)
        if isinstance(value, Artifact):
            return str(value.write(directory))
        if hasattr(value, "model_dump"):
            value = value.model_dump(mode="json")
        if not isinstance(value, Mapping):
            raise PipelineError(
                f"stage {stage} returned {type(value).__name__}: return an Artifact or a JSON-able mapping",
                stage=stage,
            )
        path = directory / "result.json"
        atomic_write_text(path, json.dumps(value, indent=2, default=str) + "\n")
        return str(path)
