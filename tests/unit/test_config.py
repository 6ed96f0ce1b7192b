from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field, ValidationError

from bedrock_ft.aws import AwsConfig
from bedrock_ft.config import BaseConfig
from bedrock_ft.errors import ConfigError


class Inner(BaseConfig):
    lr: float = Field(default=1e-4, gt=0, description="Learning rate.")
    steps: int = Field(default=10, ge=1, description="Optimizer steps.")


class Outer(BaseConfig):
    name: str = Field(default="run", description="Run name.")
    training: Inner = Field(default_factory=Inner, description="Training settings.")
    tags: list[Inner] = Field(default_factory=list, description="A list of nested configs.")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loads_yaml_toml_and_json(tmp_path: Path) -> None:
    y = write(tmp_path, "c.yaml", "name: a\ntraining:\n  lr: 0.5\n")
    t = write(tmp_path, "c.toml", 'name = "a"\n[training]\nlr = 0.5\n')
    j = write(tmp_path, "c.json", '{"name": "a", "training": {"lr": 0.5}}')
    assert (
        Outer.from_file(y)
        == Outer.from_file(t)
        == Outer.from_file(j)
        == Outer(name="a", training={"lr": 0.5})
    )


def test_unknown_key_and_wrong_type_are_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "name: a\ntraining:\n  lr: fast\n  step: 3\n")
    with pytest.raises(ConfigError) as info:
        Outer.from_file(path)
    err = info.value
    assert {p.path for p in err.problems} == {"training.lr", "training.step"}
    text = str(err)
    assert "training.lr" in text and "training.step" in text
    assert str(path) in text
    assert "did you mean 'steps'" in text
    assert "'fast'" in text  # the offending value is quoted


def test_single_unknown_key_lists_allowed_keys() -> None:
    with pytest.raises(
        ConfigError, match=r"nmae: unknown key; did you mean 'name'\? \(allowed: name, tags, training\)"
    ):
        Outer.from_dict({"nmae": "x"})


def test_nested_list_paths_are_indexed() -> None:
    with pytest.raises(ConfigError) as info:
        Outer(tags=[{"lr": 1}, {"lr": -1}])
    assert [p.path for p in info.value.problems] == ["tags[1].lr"]


def test_config_error_is_a_value_error_and_not_a_pydantic_error() -> None:
    with pytest.raises(ValueError) as info:
        Inner(lr=-1)
    assert isinstance(info.value, ConfigError)
    assert not isinstance(info.value, ValidationError)


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.yaml", "name: a\ntraining:\n  lr: [1, 2\n  steps: 3\n")
    with pytest.raises(ConfigError) as info:
        Outer.from_file(path)
    text = str(info.value)
    assert "broken.yaml" in text
    assert "not valid YAML at line 4" in text


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.toml", 'name = "a"\n[training]\nlr = = 1\n')
    with pytest.raises(ConfigError, match=r"broken\.toml.*line 3"):
        Outer.from_file(path)


def test_invalid_json_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.json", '{\n "name": "a",\n}\n')
    with pytest.raises(ConfigError, match=r"broken\.json.*line 3"):
        Outer.from_file(path)


def test_missing_file_unsupported_suffix_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml.*file not found"):
        Outer.from_file(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"unsupported config file type '\.ini'"):
        Outer.from_file(write(tmp_path, "c.ini", "x=1"))
    with pytest.raises(ConfigError, match="expected a mapping of settings at the top, got list"):
        Outer.from_file(write(tmp_path, "list.yaml", "- 1\n- 2\n"))


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert Outer.from_file(write(tmp_path, "empty.yaml", "")) == Outer()


def test_section_selects_one_stage(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline.yaml", "outer:\n  name: b\nother: {}\n")
    assert Outer.from_file(path, section="outer").name == "b"
    with pytest.raises(ConfigError, match="missing: section missing"):
        Outer.from_file(path, section="missing")


def test_configs_are_frozen_and_replace_validates() -> None:
    cfg = Outer()
    with pytest.raises(ValidationError):
        cfg.name = "other"  # type: ignore[misc]
    changed = cfg.replace(name="other", training={"steps": 5})
    assert (changed.name, changed.training.steps, cfg.name) == ("other", 5, "run")
    with pytest.raises(ConfigError, match=r"training\.steps"):
        cfg.replace(training={"steps": 0})


def test_model_validate_and_json_raise_config_error() -> None:
    with pytest.raises(ConfigError, match=r"training\.lr"):
        Outer.model_validate({"training": {"lr": -1}})
    with pytest.raises(ConfigError, match=r"training\.lr"):
        Outer.model_validate_json('{"training": {"lr": -1}}')


class WithUnion(BaseConfig):
    value: int | str = Field(default=0, description="An int or a name.")
    items: list[int | None] = Field(default_factory=list, description="Optional ints.")
    limits: dict[str, int] = Field(default_factory=dict, description="Named limits.")


def test_union_members_do_not_leak_into_field_paths() -> None:
    with pytest.raises(ConfigError) as info:
        WithUnion.from_dict({"value": [1], "items": [1, "x"], "limits": {"a": "b"}})
    problems = {p.path: p.message for p in info.value.problems}
    assert set(problems) == {"value", "items[1]", "limits.a"}
    assert problems["value"] == (
        "does not match any allowed type: Input should be a valid integer; "
        "or Input should be a valid string (got [1])"
    )


class KindA(BaseConfig):
    kind: Literal["a"] = Field(default="a", description="Which member.")
    a_only: int = Field(default=1, description="Only in A.")
    shared: int = Field(default=2, description="In both.")


class KindB(BaseConfig):
    kind: Literal["b"] = Field(default="b", description="Which member.")
    shared: int = Field(default=2, description="In both.")


class Holder(BaseConfig):
    sub: KindA | KindB = Field(default_factory=KindA, description="One of two shapes.")
    n: int = Field(default=0, description="A number.")


def test_unknown_key_hints_come_from_the_member_that_rejected_it() -> None:
    with pytest.raises(ConfigError) as info:
        Holder.from_dict({"sub": {"kind": "b", "a_only": 2}})
    problems = {p.path: p.message for p in info.value.problems}
    assert problems["sub.a_only"] == "unknown key (allowed: kind, shared)"


def test_replace_keeps_the_union_member() -> None:
    holder = Holder(sub=KindB(shared=5))
    changed = holder.replace(n=1)
    assert isinstance(changed.sub, KindB)
    assert (changed.sub.shared, changed.n) == (5, 1)


def test_a_config_may_not_define_init() -> None:
    with pytest.raises(TypeError, match="must not define __init__"):

        class Custom(BaseConfig):
            x: int = Field(default=1, description="x")

            def __init__(self, **data: object) -> None:
                super().__init__(**data)


def test_every_field_needs_a_description() -> None:
    with pytest.raises(TypeError, match="missing on undocumented"):

        class Bad(BaseConfig):
            undocumented: int = 1


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_to_file_round_trips(tmp_path: Path, suffix: str) -> None:
    cfg = Outer(name="x", training={"lr": 0.25, "steps": 7}, tags=[{"steps": 2}])
    path = cfg.to_file(tmp_path / f"out{suffix}")
    assert Outer.from_file(path) == cfg
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_config_hash_is_stable_and_sensitive() -> None:
    a = Outer.from_dict({"name": "x", "training": {"steps": 3, "lr": 0.1}})
    b = Outer.from_dict({"training": {"lr": 0.1, "steps": 3}, "name": "x"})
    assert a.config_hash() == b.config_hash()
    assert len(a.config_hash()) == 16
    assert a.config_hash() != a.model_copy(update={"name": "y"}).config_hash()


def test_config_hash_ignores_where_it_runs() -> None:
    local = AwsConfig(region="us-east-1", endpoint_urls={"s3": "http://127.0.0.1:1"})
    remote = AwsConfig(region="us-east-1", profile="prod")
    assert local.config_hash() == remote.config_hash()
    assert local.config_hash() != AwsConfig(region="eu-west-1").config_hash()


class Stage(BaseConfig):
    aws: AwsConfig = Field(default_factory=AwsConfig, description="Where to run.")
    steps: int = Field(default=1, description="Steps.")


def test_nested_hash_exclusions_apply() -> None:
    local = Stage(aws={"region": "us-east-1", "endpoint_urls": {"s3": "http://127.0.0.1:1"}})
    remote = Stage(aws={"region": "us-east-1", "profile": "prod"})
    assert local.config_hash() == remote.config_hash()
    assert local.config_hash() != local.replace(steps=2).config_hash()


class Fleet(BaseConfig):
    regions: list[AwsConfig] = Field(default_factory=list, description="Several places.")
    named: dict[str, AwsConfig] = Field(default_factory=dict, description="Places by name.")


def test_hash_exclusions_reach_into_lists_and_dicts() -> None:
    a = Fleet(regions=[{"region": "us-east-1"}], named={"x": {"region": "eu-west-1"}})
    b = Fleet(
        regions=[{"region": "us-east-1", "profile": "p"}],
        named={"x": {"region": "eu-west-1", "profile": "q"}},
    )
    assert a.config_hash() == b.config_hash()
    assert a.config_hash() != Fleet(regions=[{"region": "us-west-2"}], named=a.named).config_hash()


def test_aws_config_validates_endpoint_urls() -> None:
    with pytest.raises(ConfigError, match=r"endpoint_urls: .*must start with http"):
        AwsConfig(endpoint_urls={"s3": "127.0.0.1:9000"})


def test_fused_lora_blockers_and_settings() -> None:
    """Why the fused LoRA path can't apply, per run; and the debug check needs the path on."""
    from bedrock_ft.training import QLoRAConfig, TrainingConfig
    from bedrock_ft.training._distributed import RankInfo
    from bedrock_ft.training._fused import FusedReport, fused_lora_blocker

    q, t = QLoRAConfig(), TrainingConfig()
    assert t.fused_lora is None and TrainingConfig.seed_recipe().fused_lora is False
    assert fused_lora_blocker(q, t, "cuda", None) is None
    assert "CPU" in (fused_lora_blocker(q, t, "cpu", None) or "")
    fsdp = RankInfo(rank=0, local_rank=0, world_size=2, launch_dir=Path(), fsdp=True)
    assert "FSDP" in (fused_lora_blocker(q, t, "cuda", fsdp) or "")
    ddp = RankInfo(rank=0, local_rank=0, world_size=2, launch_dir=Path())
    assert fused_lora_blocker(q, t, "cuda", ddp) is None
    assert "bias='all'" in (fused_lora_blocker(QLoRAConfig(bias="all"), t, "cuda", None) or "")
    with pytest.raises(ConfigError, match="fused_lora_check"):
        TrainingConfig(fused_lora=False, fused_lora_check=True)
    # settings of how a run executes: changing them keeps a run resumable
    assert {"fused_lora", "fused_lora_check"} <= TrainingConfig.hash_exclude
    report = FusedReport(fused=["a", "b"], skipped={"c": "DoRA or another peft LoRA variant"})
    assert report.summary() == "fused LoRA on 2 layers; 1 left to peft (DoRA or another peft LoRA variant)"


def test_fused_lora_stays_off_with_dropout_unless_asked() -> None:
    """With LoRA dropout the fused path is slower than peft's (benchmarks/train_throughput.py), so auto
    leaves it off and says why; nothing is patched."""
    from bedrock_ft.training import QLoRAConfig, TrainingConfig
    from bedrock_ft.training._fused import fuse_lora

    report = fuse_lora(object(), QLoRAConfig(dropout=0.05), TrainingConfig(), device="cuda")
    assert report.fused == [] and report.summary().startswith("fused LoRA off: LoRA dropout 0.05: ")
