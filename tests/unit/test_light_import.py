"""`import bedrock_ft` must stay cheap: an application that only invokes a model never pays for torch."""

from __future__ import annotations

import subprocess
import sys

import bedrock_ft

HEAVY = (
    "torch", "transformers", "fmeval", "ray", "peft", "trl", "bitsandbytes", "datasets", "accelerate",
    "matplotlib", "evaluate",
)  # fmt: skip


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_import_bedrock_ft_loads_no_heavy_module() -> None:
    assert _loaded_after("import bedrock_ft") == []


def test_light_modules_and_public_names_load_no_heavy_module() -> None:
    code = (
        "import bedrock_ft\n"
        "from bedrock_ft import config, errors, artifacts, aws, preflight, architectures, cli, models\n"
        "[getattr(bedrock_ft, n) for n in bedrock_ft.__all__]\n"
        "bedrock_ft.get_architecture('llama')\n"
        "bedrock_ft.AwsConfig(region='us-east-1').client('s3')\n"
        "bedrock_ft.AdapterMerger(bedrock_ft.MergeConfig(max_shard_size='1GB'))\n"
        "from bedrock_ft.importing import ImportedModels, create_import_role, estimate_cost\n"
        "bedrock_ft.BedrockImporter(bedrock_ft.ImportConfig(model_name='m', s3_uri='s3://bkt/m/', "
        "role_arn='arn:aws:iam::123456789012:role/R'))\n"
        "c = bedrock_ft.ImportedModelClient(bedrock_ft.ImportedModel(model_name='m', architecture='llama', "
        "model_arn='arn:aws:bedrock:us-east-1:123456789012:imported-model/abcdefghij12', "
        "chat_template='{{ messages[0].content }}'))\n"
        "c.render_chat([{'role': 'user', 'content': 'hi'}]); c._client()\n"
        "from bedrock_ft.runtime import codecs\n"
        "bedrock_ft.Evaluator(bedrock_ft.EvalConfig(target_location='answer.value', engine='fmeval'))\n"
        "from bedrock_ft.evaluation import ComparisonReport\n"
    )
    assert _loaded_after(code) == []


def test_every_public_name_resolves() -> None:
    for name in bedrock_ft.__all__:
        assert getattr(bedrock_ft, name) is not None, name
    assert "get_architecture" in dir(bedrock_ft)


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        _ = bedrock_ft.NoSuchThing  # type: ignore[attr-defined]
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
