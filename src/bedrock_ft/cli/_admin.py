"""The commands around the stages: quickstart, architectures, models list/delete, local serve."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from bedrock_ft.cli._common import JsonOpt, ProfileOpt, RegionOpt, err, print_json
from bedrock_ft.progress import step_display

__all__ = ["architectures", "local_serve", "models_delete", "models_list", "quickstart"]


def quickstart(
    question: Annotated[str, typer.Option(help="What to ask the model.")] = "What is the capital of France?",
    cache: Annotated[Path | None, typer.Option(help="Cache directory (default $BEDROCK_FT_CACHE).")] = None,
    no_evaluation: Annotated[
        bool, typer.Option("--no-evaluation", help="Stop after the question: no base vs fine-tuned scores.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the quickstart pipeline on the embedded model (SmolLM2-135M-Instruct), fully offline.

    It builds a synthetic QA dataset, fine-tunes the model on it with QLoRA (on CPU), merges the
    adapter, imports the merged model into the local Bedrock (a local S3 and a local Custom Model
    Import) and asks it a question through the real Bedrock runtime API. Last, it imports the base
    model too and scores both with fmeval's QA accuracy on the held-out questions (Evaluator).
    """
    from bedrock_ft._quickstart import run_quickstart

    with step_display(err) as step:
        result = run_quickstart(question, cache=cache, step=step, evaluate=not no_evaluation)
    if as_json:
        print_json(result)
        return
    err.print(f"embedded model: [bold]{result['model_dir']}[/bold]", soft_wrap=True)
    typer.echo("dataset:")
    for line in result["dataset_summary"]:
        typer.echo(f"  {line}")
    m = result["adapter"]["train_metrics"]
    typer.echo(
        f"fine-tuned: {int(m['global_step'])} steps, loss {m['first_loss']:.3f} -> {m['final_loss']:.3f}, "
        f"{m.get('tokens_per_second', 0):,.0f} tok/s"
    )
    err.print(f"adapter:        {result['adapter']['adapter_dir']}", soft_wrap=True)
    merged = result["merged"]
    check = (merged["merge"].get("verification") or {}).get("logits") or {}
    errors = [f for f in (merged["preflight"] or {}).get("findings", ()) if f["severity"] == "error"]
    typer.echo(
        f"merged: {merged['dtype']}, {merged['total_bytes'] / 1e6:,.0f} MB, {len(merged['files'])} files; "
        f"logits vs base+adapter: max relative difference {check.get('max_rel', float('nan')):.2g}; "
        f"preflight {'passed' if not errors else f'{len(errors)} error(s)'}"
    )
    err.print(f"merged model:   {merged['model_dir']}", soft_wrap=True)
    imported = result["imported"]
    up = imported["upload"]
    sent = f"upload {up['bytes_sent'] / 1e6:,.0f} MB in {up['seconds']:.1f} s" if up else "nothing to upload"
    typer.echo(
        f"imported: {imported['architecture']}, {imported['cmus_per_copy']} CMU per copy, job "
        f"{imported['status']}; {sent}"
    )
    err.print(f"imported as:    {result['model_arn']}", soft_wrap=True)
    usage = result["usage"]
    err.print(
        f"chat ({result['api_format']}): {usage['input_tokens']} tokens in, {usage['output_tokens']} out "
        f"({result['finish_reason']}); first answer after {result['first_answer_seconds']} s, "
        f"{result['cold_start_retries']} cold-start retries"
    )
    typer.echo(f"Q: {question}")
    typer.echo(f"A: {result['answer']}")
    done = result["complete"]
    typer.echo(f"A ({done['api_format']}, prompt rendered with the training template): {done['text']}")
    _stage_lines(result["stages"])
    evaluation = result.get("evaluation")
    if evaluation is None:
        return
    typer.echo(f"evaluation: fmeval QA accuracy on the held-out split ({evaluation['dataset']})")
    for line in evaluation["summary"]:
        typer.echo(f"  {line}")
    err.print(f"report:         {evaluation['files']['html']}", soft_wrap=True)


def _stage_lines(rows: list[list[str]]) -> None:
    """The pipeline's stages: what each did this time, and how long it took."""
    typer.echo("stages:")
    for stage, action, seconds, _outputs in rows:
        took = f"{seconds} s" if seconds != "-" else ""
        typer.echo(f"  {stage:9} {action:10} {took}".rstrip())


def architectures(as_json: JsonOpt = False) -> None:
    """List the registered model architectures and what Bedrock supports for each."""
    from bedrock_ft.architectures import get_architecture, list_architectures

    rows: list[dict[str, Any]] = []
    for name in list_architectures():
        arch = get_architecture(name)
        rows.append(
            {
                "name": arch.name,
                "model_types": list(arch.model_types),
                "hf_architectures": list(arch.hf_architectures),
                "bedrock_supported": arch.bedrock_supported,
                "api_formats": [f.value for f in arch.api_formats],
                "converse": arch.supports_converse,
                "native_format": arch.native_format.name if arch.native_format else None,
                "lora_target_modules": list(arch.lora_target_modules),
            }
        )
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table("name", "model_type", "Bedrock", "Converse", "native body", "LoRA targets")
    for r in rows:
        table.add_row(
            r["name"],
            ", ".join(r["model_types"]),
            "yes" if r["bedrock_supported"] else "no",
            "yes" if r["converse"] else "no",
            r["native_format"] or "-",
            ", ".join(r["lora_target_modules"]),
        )
    Console().print(table)


def _models(region: str | None, profile: str | None) -> Any:
    from bedrock_ft.aws import AwsConfig
    from bedrock_ft.importing import ImportedModels

    return ImportedModels(AwsConfig(region=region, profile=profile), progress=err.print)


def models_list(
    name_contains: Annotated[str | None, typer.Option(help="Only models whose name contains this.")] = None,
    region: RegionOpt = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List imported models, newest first."""
    models = _models(region, profile).list(name_contains)
    if as_json:
        print_json([m.model_dump(mode="json", exclude={"upload", "chat_template"}) for m in models])
        return
    if not models:
        err.print("no imported models")
    for m in models:
        created = m.creation_time.strftime("%Y-%m-%d %H:%M") if m.creation_time else "?"
        typer.echo(f"{m.model_name}\t{m.architecture or '?'}\t{created}\t{m.model_arn}")


def models_delete(
    model: Annotated[str, typer.Argument(help="Imported model name or ARN.")],
    delete_artifacts: Annotated[
        bool,
        typer.Option("--delete-artifacts", help="Also delete the S3 files it was imported from."),
    ] = False,
    region: RegionOpt = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete an imported model (and, on request, its files in S3)."""
    lifecycle = _models(region, profile)
    found = lifecycle.get(model)
    deleted = lifecycle.delete(found.model_arn or model, delete_artifacts=delete_artifacts)
    if as_json:
        print_json({"deleted_model": found.model_arn, "deleted_objects": deleted})
        return
    typer.echo(f"deleted {found.model_name} ({found.model_arn})")
    if deleted:
        typer.echo(f"deleted {len(deleted)} S3 object(s)")


def local_serve(  # noqa: PLR0917 - one parameter per CLI option
    port: Annotated[int, typer.Option(help="Port of the local Bedrock (0: a free one).")] = 0,
    s3_port: Annotated[int, typer.Option(help="Port of the local S3 (0: a free one).")] = 0,
    host: Annotated[
        str, typer.Option(help="Address to bind (loopback unless --allow-remote).")
    ] = "127.0.0.1",
    data_dir: Annotated[Path | None, typer.Option(help="Keep jobs and models here across restarts.")] = None,
    cold_start: Annotated[bool, typer.Option(help="ModelNotReadyException while a model loads.")] = True,
    idle_unload: Annotated[float | None, typer.Option(help="Unload a model after N idle seconds.")] = 300.0,
    throttle_rps: Annotated[float | None, typer.Option(help="ThrottlingException above this rate.")] = None,
    allow_remote: Annotated[bool, typer.Option(help="Allow a non-loopback --host.")] = False,
    debug: Annotated[bool, typer.Option(help="Log requests, bodies included.")] = False,
) -> None:
    """Serve the local S3 and the local Bedrock until interrupted; prints the variables to export."""
    import logging
    import signal
    import threading

    from bedrock_ft.local import LocalBedrockConfig, LocalStack

    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(asctime)s %(message)s")
    config = LocalBedrockConfig(
        host=host,
        port=port,
        s3_port=s3_port,
        data_dir=data_dir,
        cold_start=cold_start,
        idle_unload_seconds=idle_unload,
        throttle_rps=throttle_rps,
        allow_remote=allow_remote,
        debug=debug,
    )
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    with LocalStack(config, export_env=False) as stack:
        err.print(f"local S3      {stack.s3_url}\nlocal Bedrock {stack.bedrock_url}")
        where = f"state in      {stack.data_dir}" + ("" if data_dir else " (removed on exit)")
        err.print(where, soft_wrap=True)
        err.print("Point AWS SDKs and the AWS CLI at it (Ctrl-C stops both servers):")
        typer.echo(stack.shell_exports(), nl=True)
        sys.stdout.flush()
        stopped.wait()
    err.print("stopped")
