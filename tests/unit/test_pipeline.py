"""Pipeline: the config file, the plan, and resuming, with stage functions cheap enough for a unit test.

The stages here are the user's own functions (``Pipeline(config, stages=...)``): the same mechanism a
user plugs a custom dataset step in with. The built-in stages run for real in tests/integration/pipeline.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft import ConfigError, PipelineError
from bedrock_ft.artifacts import DatasetArtifact
from bedrock_ft.pipeline import Pipeline, PipelineConfig, StageContext

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "pipelines" / "quickstart.yaml"
SEED = ROOT / "examples" / "pipelines" / "mistral-openorca-flan.yaml"


# --- the config file ------------------------------------------------------------------------------------


def test_every_problem_of_every_section_in_one_error() -> None:
    with pytest.raises(ConfigError) as caught:
        PipelineConfig.from_dict(
            {
                "name": "Bad Name",
                "training": {"learning_rate": -1},
                "merge": {"dtype": "int3"},
                "import": {"concurrency": 0},
                "invoke": {"prompts": []},
                "bogus": 1,
            },
            source="pipeline.yaml",
        )
    paths = {p.path for p in caught.value.problems}
    assert {
        "name", "training.learning_rate", "merge.dtype", "import.concurrency", "invoke.prompts", "bogus",
        "training",
    } <= paths  # fmt: skip
    text = str(caught.value)
    assert text.startswith("invalid config in pipeline.yaml: ")
    assert "training: this stage needs a dataset" in text
    assert "allowed: aws, dataset, evaluate, import," in text  # the YAML key, not the Python name


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        ({"merge": {}}, "merge", "needs an adapter"),
        ({"import": {}}, "import", "needs a merged model"),
        ({"invoke": {}}, "invoke", "needs an imported model"),
        ({"synthetic": {}, "dataset": {"source": "x.jsonl"}}, "synthetic", "not both"),
        ({"synthetic": {}, "inputs": {"dataset": "d"}}, "inputs.dataset", "remove one of them"),
        ({"target": "aws", "inputs": {"model": "m"}, "import": {"role_arn": "x"}}, "import.s3_uri",
         "missing"),
        ({"inputs": {"model": "m"}, "import": {}, "evaluate": {"compare_base": True}},
         "evaluate.compare_base", "needs the adapter"),
    ],
)  # fmt: skip
def test_sections_that_do_not_fit_together(data: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PipelineConfig.from_dict({"name": "t", **data})
    assert any(p.path == path and message in p.message for p in caught.value.problems), caught.value


def test_the_run_directory_holds_every_output_by_default(tmp_path: Path) -> None:
    cfg = PipelineConfig.from_dict(
        {"name": "r1", "run_dir": str(tmp_path), "synthetic": {}, "training": {}, "merge": {}, "import": {},
         "evaluate": {}}
    )  # fmt: skip
    assert cfg.dataset is not None and cfg.dataset.output == f"{tmp_path}/dataset"
    assert (
        cfg.training is not None and cfg.training.output_dir == f"{tmp_path}/adapter" and cfg.training.resume
    )
    assert cfg.merge is not None and cfg.merge.output_dir == f"{tmp_path}/merged"
    assert cfg.evaluate is not None and cfg.evaluate.output_dir == f"{tmp_path}/evaluation"
    # target local: the local stack's bucket and a role it accepts
    assert cfg.import_ is not None and cfg.import_.model_name == "r1"
    assert cfg.import_.s3_uri == "s3://bedrock-ft-pipeline/r1/model/"
    assert cfg.enabled() == ["dataset", "train", "merge", "import", "evaluate"]
    assert PipelineConfig.from_dict(cfg.to_dict()) == cfg  # the stored config loads back as it was


def test_the_shipped_configs_validate_and_the_packaged_quickstart_is_the_example() -> None:
    quick = PipelineConfig.from_file(QUICKSTART)
    assert quick.target == "local" and quick.enabled() == list(("dataset", "train", "merge", "import",
                                                                   "invoke", "evaluate"))  # fmt: skip
    from bedrock_ft._quickstart import QUICKSTART_CONFIG

    assert QUICKSTART_CONFIG.read_text() == QUICKSTART.read_text()
    seed = PipelineConfig.from_file(SEED)
    assert seed.target == "aws" and seed.merges_in_job
    assert seed.training is not None and seed.training.base_model == "mistralai/Mistral-7B-v0.3"
    assert seed.training.sagemaker is not None and seed.training.strategy == "fsdp"
    assert seed.dataset is not None and seed.dataset.id_contains == "flan"
    assert (seed.qlora.r, seed.qlora.alpha, seed.qlora.dropout) == (16, 8.0, 0.05)
    assert seed.enabled() == ["dataset", "train", "merge", "import", "invoke", "evaluate"]


def test_the_seed_recipe_dry_runs(run_cli: Any, tmp_path: Path) -> None:
    code, out, err = run_cli("run", str(SEED), "--dry-run", "--run-dir", str(tmp_path / "seed"))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"pipeline mistral-flan (aws) into {tmp_path / 'seed'}:"
    for stage in ("dataset", "train", "merge", "import", "invoke", "evaluate"):
        assert any(line.split()[:3] == [stage, "would", "run"] for line in lines), out
    train = (
        "  train: mistralai/Mistral-7B-v0.3 with QLoRA r16 on sagemaker ml.g5.12xlarge spot, merge in the job"
    )
    assert train in lines
    assert "no AWS credentials found" in err  # a warning in a dry run; a real run stops there
    assert not (tmp_path / "seed").exists()  # a dry run writes nothing


def test_the_built_in_dataset_stage_needs_a_source(tmp_path: Path) -> None:
    cfg = PipelineConfig.from_dict({"name": "d", "run_dir": str(tmp_path), "dataset": {}})
    with pytest.raises(ConfigError, match=r"dataset.source: missing"):
        Pipeline(cfg)
    Pipeline(cfg, stages={"dataset": Stages().dataset})  # a step of one's own makes its own records


def test_target_aws_without_credentials_stops_before_any_work(tmp_path: Path) -> None:
    cfg = PipelineConfig.from_dict(
        {"name": "a", "target": "aws", "run_dir": str(tmp_path / "run"), "synthetic": {}}
    )
    with pytest.raises(PipelineError, match=r"no AWS credentials found .*; no region .*Nothing was run"):
        Pipeline(cfg).run()
    assert not (tmp_path / "run").exists()


# --- resuming, with cheap stage functions -----------------------------------------------------------------


class Stages:
    """dataset -> train -> merge as tiny functions that count their calls."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.fail: dict[str, BaseException] = {}

    def functions(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "train": self.train, "merge": self.merge}

    def dataset(self, ctx: StageContext) -> DatasetArtifact:
        self._call(ctx)
        ctx.stage_dir.mkdir(parents=True, exist_ok=True)
        (ctx.stage_dir / "train.jsonl").write_text('{"messages": []}\n')
        return DatasetArtifact(train_uri=str(ctx.stage_dir / "train.jsonl"), format="qa")

    def train(self, ctx: StageContext) -> dict[str, Any]:
        self._call(ctx)
        dataset = ctx.input("dataset")
        assert isinstance(dataset, DatasetArtifact)
        assert ctx.config.training is not None
        return {"lr": ctx.config.training.learning_rate, "data": dataset.train_uri}

    def merge(self, ctx: StageContext) -> dict[str, Any]:
        self._call(ctx)
        return {"merged": ctx.input("train")["lr"]}

    def _call(self, ctx: StageContext) -> None:
        self.calls[ctx.name] += 1
        if ctx.name in self.fail:
            raise self.fail.pop(ctx.name)


def _config(run_dir: Path, **training: Any) -> PipelineConfig:
    return PipelineConfig.from_dict(
        {"name": "unit", "run_dir": str(run_dir), "synthetic": {}, "training": training, "merge": {}}
    )


def _reasons(pipeline: Pipeline) -> dict[str, str]:
    return {step.stage: f"{step.action}: {step.reason}" for step in pipeline.plan()}


def test_a_rerun_skips_what_is_unchanged_and_redoes_what_changed(tmp_path: Path) -> None:
    stages = Stages()
    said: list[str] = []
    first = Pipeline(_config(tmp_path), stages=stages.functions(), progress=said.append).run()
    assert stages.calls == {"dataset": 1, "train": 1, "merge": 1}
    assert first["merge"] == {"merged": 0.0002}
    state = json.loads((tmp_path / "run.json").read_text())
    assert state["status"] == "completed"
    statuses = {s: r["status"] for s, r in state["stages"].items()}
    assert statuses == dict.fromkeys(("dataset", "train", "merge"), "completed")
    assert all(r["config_hash"] and r["input_hash"] and r["output_hash"] for r in state["stages"].values())
    assert (tmp_path / "adapter" / "result.json").is_file() and (
        tmp_path / "dataset" / "manifest.json"
    ).is_file()

    # Unchanged: nothing runs, and the outputs are read back.
    again = Pipeline(_config(tmp_path), stages=stages.functions(), progress=said.append)
    assert set(_reasons(again).values()) == {"skip: unchanged"}
    second = again.run()
    assert stages.calls == {"dataset": 1, "train": 1, "merge": 1}
    assert second["merge"] == {"merged": 0.0002} and isinstance(second["dataset"], DatasetArtifact)
    assert "stage dataset: unchanged, skipped" in said
    assert [row[1] for row in second.table()] == ["unchanged"] * 3

    # Training settings changed: the dataset stays, training and everything after it are redone.
    changed = Pipeline(_config(tmp_path, learning_rate=1e-3), stages=stages.functions(), progress=said.append)
    assert _reasons(changed) == {
        "dataset": "skip: unchanged",
        "train": "run: its settings changed since the last run",
        "merge": "run: its input changes (train runs first)",
    }
    assert changed.run()["merge"] == {"merged": 0.001}
    assert stages.calls == {"dataset": 1, "train": 2, "merge": 2}

    # An output deleted between runs: that stage is redone, and the ones reading it.
    (tmp_path / "dataset" / "manifest.json").unlink()
    pipeline = Pipeline(
        _config(tmp_path, learning_rate=1e-3), stages=stages.functions(), progress=said.append
    )
    assert _reasons(pipeline)["dataset"] == f"run: its output {tmp_path}/dataset/manifest.json is gone"
    pipeline.run()
    assert stages.calls == {"dataset": 2, "train": 3, "merge": 3}
    assert "stage train: its input changes (dataset runs first)" in said

    # An output changed by hand: redone too.
    result = tmp_path / "merged" / "result.json"
    result.write_text(result.read_text().replace("0.001", "0.5"))
    pipeline = Pipeline(_config(tmp_path, learning_rate=1e-3), stages=stages.functions())
    assert _reasons(pipeline)["merge"] == f"run: its output {result} changed since it was written"
    assert pipeline.run()["merge"] == {"merged": 0.001}


def test_from_and_only(tmp_path: Path) -> None:
    stages = Stages()
    pipeline = Pipeline(_config(tmp_path), stages=stages.functions())
    with pytest.raises(PipelineError, match=r"stage dataset has not finished .*run it first"):
        pipeline.run(only="merge")
    assert stages.calls == {}
    pipeline.run()
    pipeline.run(from_stage="train")
    assert stages.calls == {"dataset": 1, "train": 2, "merge": 2}
    assert _reasons(pipeline) == dict.fromkeys(("dataset", "train", "merge"), "skip: unchanged")
    only = pipeline.run(only="merge")
    assert stages.calls == {"dataset": 1, "train": 2, "merge": 3}
    assert [(row[0], row[1]) for row in only.table()] == [
        ("dataset", "kept"),
        ("train", "kept"),
        ("merge", "ran"),
    ]
    with pytest.raises(
        PipelineError, match="--only import: this pipeline's stages are dataset, train, merge"
    ):
        pipeline.run(only="import")


def test_ctrl_c_stops_cleanly_and_the_next_run_resumes(tmp_path: Path) -> None:
    stages = Stages()
    stages.fail["train"] = KeyboardInterrupt()
    said: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        Pipeline(_config(tmp_path), stages=stages.functions(), progress=said.append).run()
    assert said[-1] == "interrupted; completed: dataset. Run the same command again to resume."
    state = json.loads((tmp_path / "run.json").read_text())
    assert state["status"] == "interrupted"
    assert state["stages"]["dataset"]["status"] == "completed"
    assert state["stages"]["train"]["status"] == "interrupted" and state["stages"]["train"]["output"] is None
    assert "merge" not in state["stages"]

    resumed = Pipeline(_config(tmp_path), stages=stages.functions())
    assert _reasons(resumed)["train"] == "run: its last run was interrupted: running it again"
    resumed.run()
    assert stages.calls == {"dataset": 1, "train": 2, "merge": 1}


def test_a_failed_stage_keeps_its_error_and_only_it_is_redone(tmp_path: Path) -> None:
    stages = Stages()
    stages.fail["merge"] = RuntimeError("disk full")
    with pytest.raises(RuntimeError, match="disk full"):
        Pipeline(_config(tmp_path), stages=stages.functions()).run()
    record = json.loads((tmp_path / "run.json").read_text())["stages"]["merge"]
    assert record["status"] == "failed" and record["error"] == "RuntimeError: disk full"
    Pipeline(_config(tmp_path), stages=stages.functions()).run()
    assert stages.calls == {"dataset": 1, "train": 1, "merge": 2}


def test_a_custom_stage_is_redone_when_its_code_changes_and_added_stages_run_in_place(tmp_path: Path) -> None:
    stages = Stages()
    Pipeline(_config(tmp_path), stages=stages.functions()).run()

    def other_dataset(ctx: StageContext) -> DatasetArtifact:
        return stages.dataset(ctx)

    pipeline = Pipeline(_config(tmp_path), stages={**stages.functions(), "dataset": other_dataset})
    assert _reasons(pipeline)["dataset"] == "run: its settings changed since the last run"

    seen: list[Any] = []

    def report(ctx: StageContext) -> dict[str, Any]:
        seen.append(ctx.input("train"))
        return {"ok": True}

    pipeline.add_stage("report", report, after="merge", needs=["train"])
    assert pipeline.stages == ["dataset", "train", "merge", "report"]
    result = pipeline.run()
    assert result["report"] == {"ok": True} and seen == [result["train"]]
    assert (tmp_path / "report" / "result.json").is_file()
    with pytest.raises(PipelineError, match="unknown stage"):
        Pipeline(_config(tmp_path), stages={"bogus": report})
    with pytest.raises(PipelineError, match="no stage 'import'"):
        pipeline.add_stage("x", report, after="import")


def test_inputs_replace_early_stages(tmp_path: Path) -> None:
    stages = Stages()
    Pipeline(_config(tmp_path / "a"), stages=stages.functions()).run()
    cfg = PipelineConfig.from_dict(
        {"name": "b", "run_dir": str(tmp_path / "b"), "inputs": {"dataset": str(tmp_path / "a" / "dataset")},
         "training": {}, "merge": {}}
    )  # fmt: skip
    pipeline = Pipeline(cfg, stages=stages.functions())
    assert _reasons(pipeline)["dataset"] == "given: from inputs.dataset"
    assert pipeline.run()["train"]["data"] == str(tmp_path / "a" / "dataset" / "train.jsonl")
    assert stages.calls == {"dataset": 1, "train": 2, "merge": 2}
    # The given dataset changed: training is redone.
    (tmp_path / "a" / "dataset" / "manifest.json").write_text(
        (tmp_path / "a" / "dataset" / "manifest.json").read_text().replace('"qa"', '"messages"')
    )
    assert _reasons(Pipeline(cfg, stages=stages.functions()))["train"].startswith("run: its input changed")


def test_the_config_reference_is_generated_from_the_models() -> None:
    from bedrock_ft.config import config_reference

    text = config_reference(PipelineConfig)
    assert text.startswith("## `PipelineConfig`")
    for section in ("DatasetConfig", "QLoRAConfig", "TrainingConfig", "SageMakerConfig", "MergeConfig",
                    "ImportConfig", "SmokeTestConfig", "PipelineEvalConfig", "AwsConfig"):  # fmt: skip
        assert f"## `{section}`" in text, section
    assert text.count("## `AwsConfig`") == 1  # each nested config once
    assert "| `import` | `ImportConfig \\| None` | `null` | The import stage (BedrockImporter). |" in text
    assert "| `name` | `str` | required |" in text
