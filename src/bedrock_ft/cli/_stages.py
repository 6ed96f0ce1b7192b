"""The stage commands: dataset build, train, merge, validate, import.

Each reads its config file through the one stage loader, applies its flags as overrides, runs the
stage class and prints the artifact (``--json``) or a summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bedrock_ft.cli._common import (
    JsonOpt,
    ProfileOpt,
    RegionOpt,
    err,
    flags,
    print_json,
    say,
    stage_settings,
)
from bedrock_ft.progress import step_display

__all__ = ["dataset_build", "import_cmd", "merge", "train", "validate"]


def dataset_build(
    config: Annotated[Path, typer.Argument(help="Config file (YAML, TOML or JSON) holding a DatasetConfig.")],
    section: Annotated[
        str | None, typer.Option(help="Read this top-level key of the file, e.g. 'dataset'.")
    ] = None,
    output: Annotated[str | None, typer.Option(help="Write here instead of the config's output.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a previous build at the output.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build the train/test splits and the evaluation file from a config file (DatasetBuilder)."""
    from bedrock_ft.data import DATASET_LAYOUT, DatasetBuilder, summarize

    overrides = {"dataset": flags(output=output, overwrite=overwrite or None)}
    cfg = stage_settings(config, DATASET_LAYOUT, overrides, section=section).configs["dataset"]
    # Plain step lines: the record counter below them is datasets' own progress bar.
    artifact = DatasetBuilder(cfg, progress=say).build()
    if as_json:
        print_json(artifact.model_dump(mode="json"))
        return
    for line in summarize(artifact):
        typer.echo(line)


def train(  # noqa: PLR0917 - one parameter per CLI option
    config: Annotated[
        Path | None,
        typer.Argument(help="Config file with 'dataset', 'qlora' and 'training' (all optional but dataset)."),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Dataset directory or manifest.json (overrides the config's).")
    ] = None,
    base_model: Annotated[
        str | None, typer.Option(help="Base model directory, hub id or 'embedded'.")
    ] = None,
    output_dir: Annotated[str | None, typer.Option(help="Run directory (overrides the config's).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimizer steps.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Delete a previous run and start over.")
    ] = False,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach", help="backend sagemaker: submit the job and return (bedrock-ft jobs wait NAME)."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune with QLoRA (QLoRATrainer) and write the adapter and its manifest to the run directory."""
    from bedrock_ft.training import TRAIN_LAYOUT, QLoRATrainer

    training = flags(
        base_model=base_model, output_dir=output_dir, max_steps=max_steps, resume=resume or None,
        overwrite=overwrite or None,
    )  # fmt: skip
    settings = stage_settings(
        config, TRAIN_LAYOUT, {"training": training}, input_value=dataset
    )  # fmt: skip
    trainer = QLoRATrainer(settings.configs["qlora"], settings.configs["training"], progress=say)
    if detach:
        job = trainer.submit(str(settings.input))
        if as_json:
            print_json({"training_job": job.name})
            return
        typer.echo(f"training job: {job.name}")
        run_dir = settings.configs["training"].output_dir
        typer.echo(f"follow it: bedrock-ft jobs wait {job.name} --output-dir {run_dir}")
        return
    artifact = trainer.train(str(settings.input))
    if as_json:
        print_json(artifact.model_dump(mode="json"))
        return
    m = artifact.train_metrics
    loss = f"loss {m.first_loss:.3f} -> {m.final_loss:.3f}" if m.first_loss is not None else ""
    rate = f", {m.tokens_per_second:,.0f} tok/s" if m.tokens_per_second else ""
    typer.echo(f"adapter: {artifact.adapter_dir}")
    typer.echo(f"steps: {m.global_step}; {loss}{rate}")


def merge(  # noqa: PLR0917 - one parameter per CLI option
    adapter: Annotated[
        str | None,
        typer.Argument(help="Training run directory, its manifest.json, or a peft adapter directory."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="Config file: a 'merge' section (and 'adapter'), or MergeConfig fields."),
    ] = None,
    output_dir: Annotated[
        str | None, typer.Option(help="Where the merge goes (model/ + manifest.json).")
    ] = None,
    base_model: Annotated[
        str | None, typer.Option(help="Full-precision base (default: the one the adapter was trained on).")
    ] = None,
    dtype: Annotated[str | None, typer.Option(help="bfloat16 (default), float16 or float32.")] = None,
    mode: Annotated[str | None, typer.Option(help="auto (default), memory or streaming.")] = None,
    max_shard_size: Annotated[str | None, typer.Option(help="Largest shard, e.g. 2GB (default).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier merge.")] = False,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the equivalence check.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Merge a LoRA adapter into its base (AdapterMerger) and export what Custom Model Import accepts."""
    from bedrock_ft.merging import MERGE_LAYOUT, AdapterMerger

    overrides = flags(
        output_dir=output_dir, base_model=base_model, dtype=dtype, mode=mode, max_shard_size=max_shard_size,
        overwrite=overwrite or None, verify=False if no_verify else None,
    )  # fmt: skip
    settings = stage_settings(
        config, MERGE_LAYOUT, {"merge": overrides}, input_value=adapter
    )  # fmt: skip
    with step_display(err) as step:
        artifact = AdapterMerger(settings.configs["merge"], progress=step).merge(str(settings.input))
    if as_json:
        print_json(artifact.model_dump(mode="json"))
        return
    shards = sum(1 for f in artifact.files if f.path.endswith(".safetensors"))
    info = artifact.merge
    typer.echo(f"model: {artifact.model_dir}")
    typer.echo(
        f"{artifact.parameter_count / 1e6:,.1f}M parameters, {artifact.dtype}, {shards} shard(s), "
        f"{artifact.total_bytes / 1e9:.2f} GB; merged in {info.seconds or 0:.1f} s ({info.mode})"
    )
    checks = info.verification
    if checks is not None and checks.weights is not None:
        w = checks.weights
        typer.echo(
            f"check: {len(w.checked)} tensors vs peft's merge: within one {artifact.dtype} rounding "
            f"(max relative difference {w.max_rel:.2g})"
        )
    if checks is not None and checks.logits is not None:
        lg = checks.logits
        typer.echo(
            f"check: logits vs base+adapter: max relative difference {lg.max_rel:.2g} (tolerance "
            f"{lg.tolerance:.2g}); rounding costs {lg.error_vs_effect:.0%} of the adapter's effect"
        )
    report = artifact.preflight
    if report is not None:
        typer.echo(f"preflight: {len(report.errors)} error(s), {len(report.warnings)} warning(s)")


def validate(
    model_dir: Annotated[Path, typer.Argument(help="Model directory: config.json, tokenizer, safetensors.")],
    as_json: JsonOpt = False,
) -> None:
    """Check a model directory against the Custom Model Import rules. Exits 1 if Bedrock would refuse it."""
    from rich.markup import escape
    from rich.text import Text

    from bedrock_ft.preflight import Severity, check_model_dir

    report = check_model_dir(model_dir)
    if as_json:
        print_json({**report.model_dump(mode="json"), "ok": report.ok})
    else:
        style = {Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
        for f in report.findings:  # Text, not markup: messages hold brackets
            line = Text.assemble((f.severity.value, style[f.severity]), f" {f.rule} ({f.path}): {f.message}")
            err.print(line, soft_wrap=True)
        counts = f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)"
        verdict = "[green]passes preflight[/green]" if report.ok else "[red]Bedrock would refuse it[/red]"
        err.print(f"{escape(str(model_dir))}: {counts}; {verdict}", soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


def import_cmd(  # noqa: PLR0917 - one parameter per CLI option
    model: Annotated[
        str | None,
        typer.Argument(
            help="The merge's output directory (or its manifest.json), a model directory, or the "
            "s3://bucket/prefix/ of a model already in S3 (imported from there, nothing uploaded)."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="Config file: an 'import' section (and 'model'), or ImportConfig fields."),
    ] = None,
    model_name: Annotated[str | None, typer.Option(help="importedModelName.")] = None,
    s3_uri: Annotated[
        str | None, typer.Option(help="Where a local model's files go: s3://bucket/prefix/.")
    ] = None,
    role_arn: Annotated[str | None, typer.Option(help="Service role Bedrock assumes to read them.")] = None,
    job_name: Annotated[str | None, typer.Option(help="Import job name (default: derived).")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Parallel S3 requests (default 8).")] = None,
    region: RegionOpt = None,
    profile: ProfileOpt = None,
    on_busy: Annotated[
        str | None, typer.Option(help="wait (default) or fail, when another import job is running.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a different model at the S3 prefix.")
    ] = False,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Return once the job is created (status InProgress).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Upload a merged model to S3 and import it with Custom Model Import (BedrockImporter)."""
    from bedrock_ft.importing import IMPORT_LAYOUT, BedrockImporter

    overrides = flags(
        model_name=model_name, s3_uri=s3_uri, role_arn=role_arn, job_name=job_name, concurrency=concurrency,
        on_busy=on_busy, overwrite=overwrite or None, wait=False if no_wait else None,
    )  # fmt: skip
    settings = stage_settings(
        config, IMPORT_LAYOUT, {"import": overrides}, input_value=model
    )  # fmt: skip
    cfg = settings.configs["import"]
    aws = flags(region=region, profile=profile)
    if aws:
        cfg = cfg.replace(aws=cfg.aws.replace(**aws))
    with step_display(err) as step:
        importer = BedrockImporter(cfg, progress=step, progress_bar=False if as_json else None)
        imported = importer.import_model(str(settings.input))
    if as_json:
        print_json(imported.model_dump(mode="json"))
        return
    typer.echo(f"model: {imported.model_arn or '(job still running)'}")
    typer.echo(f"job: {imported.job_name} ({imported.status})")
    up = imported.upload
    if up is not None:
        rate = f", {up.mb_per_s} MB/s" if up.mb_per_s else ""
        typer.echo(
            f"upload: {len(up.sent)} file(s) sent, {len(up.skipped)} already there, "
            f"{up.bytes_sent / 1e6:,.1f} MB in {up.seconds:.1f} s{rate}"
        )
    if imported.cmus_per_copy is not None:
        typer.echo(
            f"{imported.architecture}, {imported.cmus_per_copy} CMU per copy; invoke formats: "
            f"{', '.join(imported.api_formats) or 'unknown'}"
        )
