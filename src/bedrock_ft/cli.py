"""The ``bedrock-ft`` command line.

Every subcommand prints progress to stderr, exits non-zero with a one-line reason on error, and with
``--json`` prints its result as JSON on stdout. Stages that are not built yet exit with status 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from bedrock_ft._version import __version__
from bedrock_ft.errors import BedrockFTError

app = typer.Typer(
    name="bedrock-ft",
    help="Fine-tune an open model with QLoRA and serve it in Amazon Bedrock (or the local Bedrock).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
dataset_app = typer.Typer(name="dataset", help="Build SFT datasets.", no_args_is_help=True)
local_app = typer.Typer(name="local", help="The local Bedrock and local S3.", no_args_is_help=True)
models_app = typer.Typer(name="models", help="Imported models: list, delete.", no_args_is_help=True)
for _sub in (dataset_app, local_app, models_app):
    app.add_typer(_sub)

err = Console(stderr=True, highlight=False)
NOT_IMPLEMENTED = 2

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bedrock-ft {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """bedrock-ft: dataset -> QLoRA -> merge -> Custom Model Import -> invoke -> evaluate."""


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextmanager
def _steps() -> Iterator[Callable[[str], None]]:
    """A progress display: each message is a step with a spinner and its elapsed time."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=False
    ) as progress:
        current: list[Any] = []

        def step(message: str) -> None:
            if current:
                progress.update(current[-1], total=1, completed=1)
            current.append(progress.add_task(message, total=None))

        yield step
        if current:
            progress.update(current[-1], total=1, completed=1)


# --- implemented ----------------------------------------------------------------------------------


@app.command()
def quickstart(
    question: Annotated[str, typer.Option(help="What to ask the model.")] = "What is the capital of France?",
    cache: Annotated[Path | None, typer.Option(help="Cache directory (default $BEDROCK_FT_CACHE).")] = None,
    no_evaluation: Annotated[
        bool, typer.Option("--no-evaluation", help="Stop after the question: no base vs fine-tuned scores.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the quickstart on the embedded model (SmolLM2-135M-Instruct), fully offline.

    It builds a synthetic QA dataset, fine-tunes the model on it with QLoRA (on CPU), merges the
    adapter, imports the merged model into the local Bedrock (a local S3 and a local Custom Model
    Import) and asks it a question through the real Bedrock runtime API. Last, it imports the base
    model too and scores both with fmeval's QA accuracy on the held-out questions (Evaluator).
    """
    from bedrock_ft.quickstart import run_quickstart

    with _steps() as step:
        result = run_quickstart(question, cache=cache, step=step, evaluate=not no_evaluation)
    if as_json:
        _print_json(result)
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
    typer.echo(
        f"imported: {imported['architecture']}, {imported['cmus_per_copy']} CMU per copy, job "
        f"{imported['status']}; upload {up['bytes_sent'] / 1e6:,.0f} MB in {up['seconds']:.1f} s"
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
    evaluation = result.get("evaluation")
    if evaluation is None:
        return
    typer.echo(f"evaluation: fmeval QA accuracy on the held-out split ({evaluation['dataset']})")
    for line in evaluation["summary"]:
        typer.echo(f"  {line}")
    err.print(f"report:         {evaluation['files']['html']}", soft_wrap=True)


@app.command("architectures")
def architectures_cmd(as_json: JsonOpt = False) -> None:
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
        _print_json(rows)
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


@dataset_app.command("build")
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
    from bedrock_ft.data import DatasetBuilder, DatasetConfig
    from bedrock_ft.data.report import summarize

    cfg = DatasetConfig.from_file(config, section=section)
    changes: dict[str, Any] = {"output": output} if output else {}
    if overwrite:
        changes["overwrite"] = True
    if changes:
        cfg = cfg.replace(**changes)
    # Plain step lines: the record counter below them is datasets' own progress bar.
    artifact = DatasetBuilder(cfg, progress=lambda m: err.print(m, soft_wrap=True, markup=False)).build()
    if as_json:
        _print_json(artifact.model_dump(mode="json"))
        return
    for line in summarize(artifact):
        typer.echo(line)


@app.command()
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
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune with QLoRA (QLoRATrainer) and write the adapter and its manifest to the run directory."""
    from bedrock_ft.training import QLoRAConfig, QLoRATrainer, TrainingConfig
    from bedrock_ft.training.config import load_train_file

    if config is not None:
        ref, qlora, training = load_train_file(str(config), dataset=dataset)
    elif dataset is not None:
        ref, qlora, training = dataset, QLoRAConfig(), TrainingConfig()
    else:
        raise typer.BadParameter("give a config file, or --dataset")
    changes: dict[str, Any] = {
        k: v
        for k, v in {"base_model": base_model, "output_dir": output_dir, "max_steps": max_steps}.items()
        if v is not None
    }
    if resume:
        changes["resume"] = True
    if overwrite:
        changes["overwrite"] = True
    if changes:
        training = training.replace(**changes)
    trainer = QLoRATrainer(qlora, training, progress=lambda m: err.print(m, soft_wrap=True, markup=False))
    artifact = trainer.train(ref)
    if as_json:
        _print_json(artifact.model_dump(mode="json"))
        return
    m = artifact.train_metrics
    loss = f"loss {m['first_loss']:.3f} -> {m['final_loss']:.3f}" if "first_loss" in m else ""
    rate = f", {m['tokens_per_second']:,.0f} tok/s" if "tokens_per_second" in m else ""
    typer.echo(f"adapter: {artifact.adapter_dir}")
    typer.echo(f"steps: {int(m.get('global_step', 0))}; {loss}{rate}")


@app.command()
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
    from bedrock_ft.merging import AdapterMerger, MergeConfig
    from bedrock_ft.merging.config import load_merge_file

    from_file, settings = load_merge_file(str(config)) if config is not None else (None, MergeConfig())
    source = adapter or from_file
    if source is None:
        raise typer.BadParameter(
            "give the adapter (a run directory or adapter directory), or 'adapter' in --config"
        )
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "output_dir": output_dir, "base_model": base_model, "dtype": dtype, "mode": mode,
            "max_shard_size": max_shard_size,
        }.items()
        if v is not None
    }  # fmt: skip
    if overwrite:
        changes["overwrite"] = True
    if no_verify:
        changes["verify"] = False
    if changes:
        settings = settings.replace(**changes)
    with _steps() as step:
        artifact = AdapterMerger(settings, progress=step).merge(source)
    if as_json:
        _print_json(artifact.model_dump(mode="json"))
        return
    shards = sum(1 for f in artifact.files if f.path.endswith(".safetensors"))
    typer.echo(f"model: {artifact.model_dir}")
    typer.echo(
        f"{artifact.parameter_count / 1e6:,.1f}M parameters, {artifact.dtype}, {shards} shard(s), "
        f"{artifact.total_bytes / 1e9:.2f} GB; merged in {artifact.merge.get('seconds', 0):.1f} s "
        f"({artifact.merge.get('mode')})"
    )
    checks = artifact.merge.get("verification") or {}
    if "weights" in checks:
        w = checks["weights"]
        typer.echo(
            f"check: {len(w['checked'])} tensors vs peft's merge: within one {artifact.dtype} rounding "
            f"(max relative difference {w['max_rel']:.2g})"
        )
    if "logits" in checks:
        lg = checks["logits"]
        typer.echo(
            f"check: logits vs base+adapter: max relative difference {lg['max_rel']:.2g} (tolerance "
            f"{lg['tolerance']:.2g}); rounding costs {lg['error_vs_effect']:.0%} of the adapter's effect"
        )
    report = artifact.preflight
    if report is not None:
        typer.echo(f"preflight: {len(report.errors)} error(s), {len(report.warnings)} warning(s)")


@app.command()
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
        _print_json({**report.model_dump(mode="json"), "ok": report.ok})
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


@app.command("import")
def import_cmd(  # noqa: PLR0917 - one parameter per CLI option
    model: Annotated[
        str | None,
        typer.Argument(help="The merge's output directory (or its manifest.json), or a model directory."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="Config file: an 'import' section (and 'model'), or ImportConfig fields."),
    ] = None,
    model_name: Annotated[str | None, typer.Option(help="importedModelName.")] = None,
    s3_uri: Annotated[str | None, typer.Option(help="Where the files go: s3://bucket/prefix/.")] = None,
    role_arn: Annotated[str | None, typer.Option(help="Service role Bedrock assumes to read them.")] = None,
    job_name: Annotated[str | None, typer.Option(help="Import job name (default: derived).")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Parallel S3 requests (default 8).")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region (default: AWS_REGION, the profile).")] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile.")] = None,
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
    from bedrock_ft.bedrock import BedrockImporter, ImportConfig
    from bedrock_ft.bedrock.config import load_import_file

    flags: dict[str, Any] = {
        k: v
        for k, v in {
            "model_name": model_name, "s3_uri": s3_uri, "role_arn": role_arn, "job_name": job_name,
            "concurrency": concurrency, "on_busy": on_busy,
        }.items()
        if v is not None
    }  # fmt: skip
    if overwrite:
        flags["overwrite"] = True
    if no_wait:
        flags["wait"] = False
    aws = {k: v for k, v in {"region": region, "profile": profile}.items() if v is not None}
    if config is not None:
        from_file, settings = load_import_file(str(config), flags)
        if aws:
            settings = settings.replace(aws=settings.aws.replace(**aws))
    else:
        from_file, settings = None, ImportConfig.from_dict({**flags, **({"aws": aws} if aws else {})})
    source = model or from_file
    if source is None:
        raise typer.BadParameter("give the model (the merge's output directory), or 'model' in --config")
    with _steps() as step:
        imported = BedrockImporter(settings, progress=step, progress_bar=not as_json).import_model(source)
    if as_json:
        _print_json(imported.model_dump(mode="json"))
        return
    typer.echo(f"model: {imported.model_arn or '(job still running)'}")
    typer.echo(f"job: {imported.job_name} ({imported.status})")
    up = imported.upload
    if up:
        rate = f", {up['mb_per_s']} MB/s" if up.get("mb_per_s") else ""
        typer.echo(
            f"upload: {len(up['sent'])} file(s) sent, {len(up['skipped'])} already there, "
            f"{up['bytes_sent'] / 1e6:,.1f} MB in {up['seconds']:.1f} s{rate}"
        )
    if imported.cmus_per_copy is not None:
        typer.echo(
            f"{imported.architecture}, {imported.cmus_per_copy} CMU per copy; invoke formats: "
            f"{', '.join(imported.api_formats) or 'unknown'}"
        )


def _lifecycle(region: str | None, profile: str | None) -> Any:
    from bedrock_ft.aws import AwsConfig
    from bedrock_ft.bedrock import BedrockImporter

    return BedrockImporter(aws=AwsConfig(region=region, profile=profile), progress=err.print)


RegionOpt = Annotated[str | None, typer.Option(help="AWS region (default: AWS_REGION, the profile).")]
ProfileOpt = Annotated[str | None, typer.Option(help="AWS profile.")]


@models_app.command("list")
def models_list(
    name_contains: Annotated[str | None, typer.Option(help="Only models whose name contains this.")] = None,
    region: RegionOpt = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List imported models, newest first."""
    models = _lifecycle(region, profile).list_imported_models(name_contains)
    if as_json:
        _print_json([m.model_dump(mode="json", exclude={"upload", "chat_template"}) for m in models])
        return
    if not models:
        err.print("no imported models")
    for m in models:
        created = m.creation_time.strftime("%Y-%m-%d %H:%M") if m.creation_time else "?"
        typer.echo(f"{m.model_name}\t{m.architecture or '?'}\t{created}\t{m.model_arn}")


@models_app.command("delete")
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
    importer = _lifecycle(region, profile)
    found = importer.get(model)
    deleted = importer.delete(found.model_arn or model, delete_artifacts=delete_artifacts)
    if as_json:
        _print_json({"deleted_model": found.model_arn, "deleted_objects": deleted})
        return
    typer.echo(f"deleted {found.model_name} ({found.model_arn})")
    if deleted:
        typer.echo(f"deleted {len(deleted)} S3 object(s)")


@app.command()
def invoke(  # noqa: PLR0917 - one parameter per CLI option
    prompt: Annotated[str, typer.Argument(help="The prompt (with --chat: the user message).")],
    model: Annotated[
        str,
        typer.Option(
            "--model", help="Imported model ARN, or an ImportedModel manifest (the import's --json output)."
        ),
    ],
    chat: Annotated[
        bool, typer.Option("--chat", help="Send PROMPT as a user message (chat template applied).")
    ] = False,
    system: Annotated[str | None, typer.Option(help="A system message (implies --chat).")] = None,
    stream: Annotated[bool, typer.Option("--stream", help="Print the answer as it is generated.")] = False,
    api_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="auto, BedrockCompletion, OpenAICompletion, OpenAIChatCompletion, mistral, llama, Converse.",
        ),
    ] = "auto",
    max_tokens: Annotated[int, typer.Option(help="Most tokens to generate.")] = 512,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature (0: greedy).")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling mass.")] = None,
    stop: Annotated[list[str] | None, typer.Option(help="A stop sequence (repeatable).")] = None,
    chat_template: Annotated[
        Path | None, typer.Option(help="A .jinja file: the template the model was trained with.")
    ] = None,
    region: RegionOpt = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Invoke an imported model (ImportedModelClient), retrying its cold start."""
    from bedrock_ft.aws import AwsConfig
    from bedrock_ft.bedrock import InvokeConfig

    template = chat_template.read_text(encoding="utf-8") if chat_template is not None else None
    aws = AwsConfig(region=region, profile=profile)
    converse = api_format == "Converse"
    config = InvokeConfig(api_format="auto" if converse else api_format, chat_template=template, aws=aws)
    progress = err.print if not as_json else None
    client = _client_for(model, config, progress)
    params: dict[str, Any] = {"max_tokens": max_tokens}
    params.update({k: v for k, v in {"temperature": temperature, "top_p": top_p}.items() if v is not None})
    if stop:
        params["stop"] = tuple(stop)
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    as_chat = chat or bool(system) or converse
    if stream:
        if converse:
            opened = client.converse_stream(messages, **params)
        else:
            opened = client.stream(messages if as_chat else prompt, **params)
        with opened as chunks:
            for chunk in chunks:
                if not as_json:
                    sys.stdout.write(chunk)
                    sys.stdout.flush()
            completion = chunks.completion
        if not as_json:
            sys.stdout.write("\n")
    elif converse:
        completion = client.converse(messages, **params)
    elif as_chat:
        completion = client.chat(messages, **params)
    else:
        completion = client.complete(prompt, **params)
    if completion is None:  # pragma: no cover - a stream that ended without an answer raised already
        raise typer.Exit(1)
    if as_json:
        _print_json(
            {
                "text": completion.text,
                "finish_reason": completion.finish_reason,
                "input_tokens": completion.input_tokens,
                "output_tokens": completion.output_tokens,
                "latency_s": round(completion.latency_s, 3),
                "api_format": completion.api_format,
                "attempts": completion.attempts,
                "model_arn": completion.model_id,
            }
        )
        return
    if not stream:
        typer.echo(completion.text)
    c = completion
    err.print(
        f"[dim]{c.api_format}, finish {c.finish_reason}, {c.input_tokens} tokens in, {c.output_tokens} out, "
        f"{c.latency_s:.2f} s, {c.attempts} attempt(s)[/dim]"
    )


def _client_for(model: str, config: Any, progress: Callable[[str], None] | None) -> Any:
    """An ImportedModelClient from an imported model ARN or an ImportedModel manifest."""
    from bedrock_ft.artifacts import ImportedModel, load_artifact
    from bedrock_ft.bedrock import ImportedModelClient

    if model.startswith("arn:"):
        return ImportedModelClient.from_arn(model, config, progress=progress)
    artifact = load_artifact(model)
    if not isinstance(artifact, ImportedModel):
        raise typer.BadParameter(f"{model} holds a {artifact.kind} artifact, not an imported model")
    return ImportedModelClient(artifact, config, progress=progress)


@app.command()
def evaluate(  # noqa: PLR0917 - one parameter per CLI option
    model: Annotated[
        str, typer.Option("--model", help="Imported model ARN, or an ImportedModel manifest, to evaluate.")
    ],
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset",
            help="JSON Lines file (local or s3://), or a dataset manifest (its fmeval-ready test split).",
        ),
    ],
    baseline: Annotated[
        str | None, typer.Option("--baseline", help="A model to compare with (ARN or manifest).")
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="An EvalConfig file (YAML or TOML); flags override it.")
    ] = None,
    engine: Annotated[str | None, typer.Option(help="fast (default) or fmeval.")] = None,
    output: Annotated[
        Path | None, typer.Option(help="Directory for report.json, records.jsonl, report.md/html.")
    ] = None,
    max_records: Annotated[int | None, typer.Option(help="Evaluate only the first N records.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Most tokens per answer (default 64).")] = None,
    question_field: Annotated[str | None, typer.Option(help="Question location (key or JMESPath).")] = None,
    target_field: Annotated[
        str | None, typer.Option(help="Expected-answer location (key or JMESPath, e.g. answer.value).")
    ] = None,
    category_field: Annotated[str | None, typer.Option(help="Category location ('' for none).")] = None,
    system_field: Annotated[
        str | None, typer.Option(help="System-message location ('' to send none).")
    ] = None,
    chat_template: Annotated[
        Path | None,
        typer.Option(
            help="A .jinja file: the template the models were trained with (both, with --baseline)."
        ),
    ] = None,
    no_resume: Annotated[
        bool, typer.Option("--no-resume", help="Ask every record again, even if answers.jsonl has it.")
    ] = False,
    region: RegionOpt = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate imported models with fmeval's QA accuracy (Evaluator); with --baseline, compare them."""
    from bedrock_ft.artifacts import DatasetArtifact, load_artifact
    from bedrock_ft.aws import AwsConfig
    from bedrock_ft.bedrock import InvokeConfig
    from bedrock_ft.evaluation import EvalConfig, Evaluator

    aws = AwsConfig(region=region, profile=profile)
    base = EvalConfig.from_file(config_file) if config_file is not None else EvalConfig()
    flags = {
        "engine": engine,
        "output_dir": str(output) if output is not None else None,
        "max_records": max_records,
        "max_tokens": max_tokens,
        "question_location": question_field,
        "target_location": target_field,
        "category_location": category_field,
        "system_location": system_field,
    }
    updates: dict[str, Any] = {k: (v if v != "" else None) for k, v in flags.items() if v is not None}
    if region is not None or profile is not None or base.aws is None:
        updates["aws"] = aws
    if no_resume:
        updates["resume"] = False
    if as_json:
        updates["progress_bar"] = False
    if "output_dir" not in updates and base.output_dir is None:
        updates["output_dir"] = "evaluation"
    config = EvalConfig(**{**dict(base), **updates})  # through __init__: a bad flag is a ConfigError
    template = chat_template.read_text(encoding="utf-8") if chat_template is not None else None
    invoke = InvokeConfig(
        chat_template=template, aws=config.aws or aws, max_concurrency=config.max_concurrency
    )
    progress = err.print if not as_json else None
    targets = {}
    if baseline is not None:
        targets["baseline"] = _client_for(baseline, invoke, progress)
    targets["model"] = _client_for(model, invoke, progress)
    source: Any = dataset
    if not dataset.startswith("s3://") and (Path(dataset).is_dir() or Path(dataset).name == "manifest.json"):
        artifact = load_artifact(dataset)
        if not isinstance(artifact, DatasetArtifact):
            raise typer.BadParameter(f"{dataset} holds a {artifact.kind} artifact, not a dataset")
        source = artifact
    comparison = Evaluator(config, progress=progress).evaluate_many(targets, source)
    if as_json:
        _print_json(comparison.model_dump(mode="json"))  # no NaN: a metric with no scored record is null
        return
    for line in comparison.summary():
        typer.echo(line)
    for kind in ("html", "markdown", "json", "records"):
        err.print(f"{kind + ':':10}{comparison.files[kind]}", soft_wrap=True)


@local_app.command("serve")
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


# --- stages still to come ---------------------------------------------------------------------------

# (group, name, help). Each becomes a real command when its stage lands; until then it exits with 2.
_PENDING: list[tuple[typer.Typer, str, str]] = [
    (app, "run", "Run the whole pipeline from one config file."),
]


def _pending(name: str) -> Callable[..., None]:
    def command(
        target: Annotated[str | None, typer.Argument(help="Config file, model directory or ARN.")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        err.print(f"bedrock-ft {name}: not implemented yet")
        raise typer.Exit(NOT_IMPLEMENTED)

    return command


for _group, _name, _help in _PENDING:
    _full = f"{_group.info.name} {_name}" if _group is not app else _name
    _group.command(_name, help=_help + " Not implemented yet.")(_pending(_full))


def main(argv: list[str] | None = None) -> None:
    """Entry point: bedrock-ft errors become one red line on stderr and exit status 1."""
    try:
        app(args=argv, prog_name="bedrock-ft")
    except BedrockFTError as exc:
        from rich.markup import escape

        reason = "; ".join(line.strip(" -") for line in str(exc).splitlines() if line.strip())
        # escaped: a reason like "pip install 'bedrock-ft[eval]'" is text, not rich markup
        err.print(f"[red]error:[/red] {escape(reason)}", soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
