"""ImportConfig, job names and tokens, the upload plan, the cost estimate and the IAM policies: no AWS."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft import ArtifactError, ConfigError, ConflictError, ImportConfig
from bedrock_ft._shapes import operation_model, pattern_matcher
from bedrock_ft.artifacts import FileEntry
from bedrock_ft.config import load_stage_file
from bedrock_ft.importing import IMPORT_LAYOUT, estimate_cost, import_role_policies
from bedrock_ft.importing._config import shape_errors
from bedrock_ft.importing._jobs import client_token, derived_job_name
from bedrock_ft.importing._upload import LocalFile, RemoteObject, hash_files, plan_upload

ROLE = "arn:aws:iam::123456789012:role/BedrockImport"


def config(**changes: Any) -> ImportConfig:
    return ImportConfig(**{"model_name": "m", "s3_uri": "s3://bkt/models/m", "role_arn": ROLE, **changes})


def test_config_normalizes_the_uri_and_splits_it() -> None:
    cfg = config()
    assert cfg.s3_uri == "s3://bkt/models/m/"
    assert (cfg.bucket, cfg.prefix) == ("bkt", "models/m/")
    assert cfg.chunk_bytes == cfg.threshold_bytes == 16 * 2**20
    assert (cfg.concurrency, cfg.on_busy, cfg.checksum_algorithm, cfg.wait) == (8, "wait", "CRC32", True)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        ImportConfig(model_name="bad name", s3_uri="s3://bkt", role_arn="nope", concurrency=0)
    assert sorted(p.path for p in info.value.problems) == ["concurrency", "model_name", "role_arn", "s3_uri"]


def test_only_settings_that_reach_the_job_change_the_hash() -> None:
    upload_only = {"concurrency": 2, "overwrite": True, "timeout": 5, "checksum_algorithm": "SHA256"}
    assert config().config_hash() == config(**upload_only, sse_kms_key_id="k").config_hash()
    assert config().config_hash() != config(model_tags={"team": "ml"}).config_hash()


@pytest.mark.parametrize("name", ["m", "my_model", "a" * 63, "x_-_y", "9lives", "___"[:0] or "q"])
@pytest.mark.parametrize("attempt", [1, 2, 17, 99_999])
def test_derived_job_names_satisfy_the_service(name: str, attempt: int) -> None:
    job = derived_job_name(name, hashlib.sha256(name.encode()).hexdigest(), attempt)
    assert shape_errors("jobName", job) == [], job
    assert job.endswith(f"-r{attempt}") == (attempt > 1)


def test_client_token_is_the_requests_hash_and_valid() -> None:
    request = {"jobName": "j", "importedModelName": "m", "roleArn": ROLE}
    token = client_token(request)
    assert token == client_token({**request, "clientRequestToken": "ignored"})
    assert token != client_token({**request, "jobName": "k"})
    shape = operation_model("bedrock", "CreateModelImportJob").input_shape.members["clientRequestToken"]
    assert pattern_matcher(shape.metadata["pattern"])(token[:64])


def test_cost_is_cmus_times_copies_times_price_per_billed_window() -> None:
    est = estimate_cost(2, price_per_cmu_minute=0.1, active_minutes=10.5, copies=3)
    assert (est.windows, est.cost) == (3, pytest.approx(2 * 3 * 0.1 * 5 * 3))
    assert estimate_cost(1, price_per_cmu_minute=0.1, active_minutes=5).windows == 1  # exactly one window
    assert estimate_cost(1, price_per_cmu_minute=0.1, active_minutes=0).cost == 0
    with pytest.raises(ConfigError) as info:
        estimate_cost(0, price_per_cmu_minute=-1, active_minutes=float("nan"), copies=0)
    assert sorted(p.path for p in info.value.problems) == [
        "active_minutes", "cmus_per_copy", "copies", "price_per_cmu_minute",
    ]  # fmt: skip


def test_role_policies_scope_to_the_prefix_region_and_partition() -> None:
    trust, permissions = import_role_policies(
        "s3://bkt/a/b/", account_id="111122223333", region=None, partition="aws-us-gov"
    )
    condition = trust["Statement"][0]["Condition"]
    assert condition["ArnLike"]["aws:SourceArn"] == "arn:aws-us-gov:bedrock:*:111122223333:model-import-job/*"
    resources = {s["Sid"]: s["Resource"] for s in permissions["Statement"]}
    assert resources == {
        "ListModelPrefix": "arn:aws-us-gov:s3:::bkt",
        "ReadModelFiles": "arn:aws-us-gov:s3:::bkt/a/b/*",
    }
    _, permissions = import_role_policies("s3://bkt/models/m", account_id="111122223333")
    read = next(s for s in permissions["Statement"] if s["Sid"] == "ReadModelFiles")
    assert read["Resource"] == "arn:aws:s3:::bkt/models/m/*"  # not models/m2/ too
    with pytest.raises(ConfigError) as info:
        import_role_policies("s3://bkt/a/", account_id="12", kms_key_arn="alias/x")
    assert sorted(p.path for p in info.value.problems) == ["account_id", "kms_key_arn"]


def _file(name: str, data: bytes) -> LocalFile:
    return LocalFile(Path(name), name, len(data), hashlib.sha256(data).hexdigest())


FILES = [_file("config.json", b"{}"), _file("model.safetensors", b"w" * 10), _file("tokenizer.json", b"t")]


def _remote(*files: LocalFile, prefix: str = "p/") -> dict[str, RemoteObject]:
    return {prefix + f.name: RemoteObject(prefix + f.name, f.size, f.sha256) for f in files}


def test_plan_sends_what_is_missing_config_last() -> None:
    plan = plan_upload(FILES, _remote(FILES[1]), "p/", "s3://b/p/", overwrite=False)
    assert [f.name for f in plan.skip] == ["model.safetensors"]
    assert [f.name for f in plan.send] == ["tokenizer.json", "config.json"]
    assert plan.delete == []


@pytest.mark.parametrize(
    "remote",
    [
        {"p/old.bin": RemoteObject("p/old.bin", 3, None)},  # not one of the model's files
        {"p/model.safetensors": RemoteObject("p/model.safetensors", 10, "0" * 64)},  # other content
        {"p/model.safetensors": RemoteObject("p/model.safetensors", 10, None)},  # written by someone else
        {"p/model.safetensors": RemoteObject("p/model.safetensors", 9, FILES[1].sha256)},  # cut short
    ],
)
def test_plan_refuses_a_different_model_unless_overwrite(remote: dict[str, RemoteObject]) -> None:
    with pytest.raises(ConflictError, match=r"s3://b/p/ already holds a different model"):
        plan_upload(FILES, remote, "p/", "s3://b/p/", overwrite=False)
    plan = plan_upload(FILES, remote, "p/", "s3://b/p/", overwrite=True)
    assert plan.skip == [] and len(plan.send) == 3
    assert plan.delete == [k for k in remote if k != "p/model.safetensors"]


def test_hash_files_checks_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "b.safetensors").write_bytes(b"x" * 5)
    entries = [
        FileEntry(path=p.name, size=p.stat().st_size, sha256=hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(tmp_path.iterdir())
    ]
    files = hash_files(tmp_path, entries)
    assert [(f.name, f.sha256) for f in files] == [(e.path, e.sha256) for e in entries]
    (tmp_path / "extra.txt").write_text("?")
    with pytest.raises(ArtifactError, match=r"extra\.txt is not part of the merged model"):
        hash_files(tmp_path, entries)
    (tmp_path / "extra.txt").unlink()
    (tmp_path / "b.safetensors").write_bytes(b"y" * 5)
    with pytest.raises(ArtifactError, match=r"b\.safetensors: its sha256 differs from the manifest's"):
        hash_files(tmp_path, entries)
    (tmp_path / "b.safetensors").write_bytes(b"y" * 6)
    with pytest.raises(ArtifactError, match=r"b\.safetensors: 6 bytes, the manifest says 5"):
        hash_files(tmp_path, entries)
    (tmp_path / "a.json").unlink()
    with pytest.raises(ArtifactError, match=r"a\.json is listed in the model's manifest but missing"):
        hash_files(tmp_path, entries)


def test_import_file_sections_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "import.yaml"
    path.write_text(f"model: runs/merged\nimport:\n  model_name: m\n  role_arn: {ROLE}\n")
    loaded = load_stage_file(path, IMPORT_LAYOUT, overrides={"import": {"s3_uri": "s3://bkt/m/"}})
    cfg = loaded.configs["import"]  # the flag fills the gap
    assert loaded.input == "runs/merged" and cfg.s3_uri == "s3://bkt/m/" and cfg.model_name == "m"
    path.write_text("model: x\nimprot: {}\n")
    with pytest.raises(ConfigError, match=r"unknown top-level key\(s\) 'improt'"):
        load_stage_file(path, IMPORT_LAYOUT)
    path.write_text(f"model_name: m\nrole_arn: {ROLE}\ns3_uri: s3://bkt/m/\nconcurency: 2\n")
    with pytest.raises(ConfigError, match="concurency"):
        load_stage_file(path, IMPORT_LAYOUT, input="x")


def test_the_importer_page_lists_every_rule() -> None:
    from bedrock_ft.preflight import RULES

    docs = (Path(__file__).resolve().parents[2] / "docs" / "importing.md").read_text()
    for rule in RULES:
        assert f"| `{rule.id}` | {rule.severity.value} |" in docs, (
            f"docs/importing.md does not list {rule.id}"
        )


def test_plan_resends_files_not_encrypted_with_the_key() -> None:
    key = "arn:aws:kms:us-east-1:111122223333:key/abc"
    remote = _remote(*FILES)
    remote["p/tokenizer.json"] = RemoteObject("p/tokenizer.json", FILES[2].size, FILES[2].sha256, key)
    plan = plan_upload(FILES, remote, "p/", "s3://b/p/", overwrite=False, kms_key="abc")  # a key id
    assert [f.name for f in plan.skip] == ["tokenizer.json"]
    assert [f.name for f in plan.send] == ["model.safetensors", "config.json"]


def test_s3_locations_overlap() -> None:
    from bedrock_ft.importing._lifecycle import overlap

    assert overlap("s3://b/models/m", "s3://b/models/m/")
    assert overlap("s3://b/models/", "s3://b/models/m/")
    assert not overlap("s3://b/models/m/", "s3://b/models/m2/")
    assert not overlap("s3://b/models/m/", "s3://c/models/m/")


def test_waits_retry_transient_errors_but_not_others() -> None:
    from bedrock_ft import AccessDeniedError, ThrottledError
    from bedrock_ft.importing._jobs import _poll

    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ThrottledError("slow down")
        return "Completed"

    assert (
        _poll(flaky, lambda s: s == "Completed", timeout=30, max_interval=0.5, on_wait=lambda *_: None)
        == "Completed"
    )
    assert len(calls) == 3

    def denied() -> str:
        calls.append(1)
        raise AccessDeniedError("no")

    calls.clear()
    with pytest.raises(AccessDeniedError):
        _poll(denied, lambda s: True, timeout=30, max_interval=0.5, on_wait=lambda *_: None)
    assert len(calls) == 1
