"""``bedrock-ft run``: the whole pipeline from one config file (Pipeline)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bedrock_ft.cli._common import JsonOpt, err, print_json
from bedrock_ft.progress import step_display

__all__ = ["print_stage_table", "run"]


def run(  # noqa: PLR0917 - one parameter per CLI option
    config: Annotated[Path, typer.Argument(help="Pipeline config file (YAML, TOML or JSON).")],
    from_stage: Annotated[
        str | None, typer.Option("--from", help="Redo this stage and every one after it.")
    ] = None,
    only: Annotated[str | None, typer.Option("--only", help="Run only this stage.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would run and why; run nothing.")
    ] = False,
    run_dir: Annotated[
        str | None, typer.Option(help="Run directory (overrides the config's run_dir).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the pipeline: dataset -> train -> merge -> import -> invoke -> evaluate.

    Every stage writes into the run directory; a re-run skips each stage whose settings and input are
    unchanged and redoes the first changed one and all after it. Ctrl-C stops cleanly, and the same
    command resumes.
    """
    from bedrock_ft.config import load_config_file
    from bedrock_ft.pipeline import Pipeline, PipelineConfig

    data = load_config_file(config)
    if run_dir is not None:
        data["run_dir"] = run_dir
    settings = PipelineConfig.from_dict(data, source=str(config))  # every problem, before anything runs
    if dry_run:
        _dry_run(Pipeline(settings, progress=_say), from_stage, only, as_json)
        return
    try:
        with step_display(err) as step:
            result = Pipeline(settings, progress=step).run(from_stage=from_stage, only=only)
    except KeyboardInterrupt:
        err.print("[yellow]stopped[/yellow]: run the same command again to resume", soft_wrap=True)
        raise typer.Exit(130) from None
    if as_json:
        print_json(
            {
                "run_dir": str(result.run_dir),
                "state": result.state.model_dump(mode="json"),
            }
        )
        return
    print_stage_table(result)


def _say(message: str) -> None:
    err.print(message, soft_wrap=True, markup=False)


def _dry_run(pipeline: Any, from_stage: str | None, only: str | None, as_json: bool) -> None:
    from bedrock_ft.pipeline import aws_problems

    plan = pipeline.plan(from_stage=from_stage, only=only)
    warnings: list[str] = []
    cfg = pipeline.config
    if cfg.target == "aws":
        from bedrock_ft.aws import AwsConfig

        warnings = [f"target aws: {p} (a real run stops here)" for p in aws_problems(cfg.aws or AwsConfig())]
    if as_json:
        print_json(
            {
                "run_dir": str(pipeline.run_dir),
                "target": cfg.target,
                "plan": [{"stage": s.stage, "action": s.action, "reason": s.reason} for s in plan],
                "warnings": warnings,
            }
        )
        return
    typer.echo(f"pipeline {cfg.name} ({cfg.target}) into {pipeline.run_dir}:")
    for step in plan:
        typer.echo(f"  {step.stage:9} {_ACTIONS[step.action]:12} {step.reason}")
    for line in _describe(cfg):
        typer.echo(f"  {line}")
    for warning in warnings:
        err.print(f"[yellow]warning[/yellow]: {warning}", soft_wrap=True)


_ACTIONS = {"run": "would run", "skip": "skip", "keep": "keep", "given": "given"}


def _describe(cfg: Any) -> list[str]:
    """The settings a reader of the plan wants to see at a glance."""
    lines = []
    if cfg.dataset is not None:
        source = f"synthetic {cfg.synthetic.kind}" if cfg.synthetic else cfg.dataset.source
        lines.append(f"dataset: {source} -> {cfg.dataset.output}")
    if cfg.training is not None:
        t = cfg.training
        where = t.backend
        if t.backend == "sagemaker" and t.sagemaker is not None:
            sm = t.sagemaker
            where = f"sagemaker {sm.instance_type}{' spot' if sm.spot else ''}"
            where += ", merge in the job" if sm.merge_in_job else ""
        lines.append(f"train: {t.base_model} with QLoRA r{cfg.qlora.r} on {where}")
    if cfg.import_ is not None:
        lines.append(f"import: {cfg.import_.model_name} via {cfg.import_.s3_uri or 'the job output in S3'}")
    if cfg.evaluate is not None:
        versus = ", base vs fine-tuned" if cfg.evaluate.compare_base else ""
        lines.append(f"evaluate: {cfg.evaluate.engine} engine{versus}")
    return lines


def print_stage_table(result: Any) -> None:
    """The table at the end of a run: each stage, what happened, its duration and key outputs."""
    from rich.console import Console
    from rich.table import Table

    table = Table("stage", "", "seconds", "key outputs", title=f"run {result.state.name}")
    for stage, action, seconds, outputs in result.table():
        table.add_row(stage, action, seconds, outputs)
    Console(soft_wrap=True).print(table)
    evaluation = result.outputs.get("evaluate")
    if isinstance(evaluation, dict):
        for line in evaluation.get("summary", ()):
            typer.echo(f"  {line}")
        if html := (evaluation.get("files") or {}).get("html"):
            err.print(f"report: {html}", soft_wrap=True, markup=False)
    typer.echo(f"run directory: {result.run_dir} (run.json)")
