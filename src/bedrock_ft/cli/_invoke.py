"""Calling imported models from the command line: invoke, evaluate."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from bedrock_ft.cli._common import (
    JsonOpt,
    ProfileOpt,
    RegionOpt,
    client_for,
    err,
    flags,
    print_json,
    stage_settings,
)
from bedrock_ft.formats import CONVERSE, FORMAT_NAMES

__all__ = ["evaluate", "invoke"]

_FORMATS_HELP = ", ".join(("auto", *FORMAT_NAMES, CONVERSE))


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
            help=f"{_FORMATS_HELP}.",
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
    from bedrock_ft.runtime import InvokeConfig

    template = chat_template.read_text(encoding="utf-8") if chat_template is not None else None
    aws = AwsConfig(region=region, profile=profile)
    converse = api_format == CONVERSE
    config = InvokeConfig(api_format="auto" if converse else api_format, chat_template=template, aws=aws)
    progress = err.print if not as_json else None
    client = client_for(model, config, progress)
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
        print_json(
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
    from bedrock_ft.aws import AwsConfig
    from bedrock_ft.evaluation import EVAL_LAYOUT, Evaluator
    from bedrock_ft.runtime import InvokeConfig

    aws = AwsConfig(region=region, profile=profile)
    given = flags(
        engine=engine, output_dir=str(output) if output is not None else None, max_records=max_records,
        max_tokens=max_tokens, question_location=question_field, target_location=target_field,
        category_location=category_field, system_location=system_field, resume=False if no_resume else None,
    )  # fmt: skip
    overrides = {k: (v if v != "" else None) for k, v in given.items()}  # '' turns a location off
    if region is not None or profile is not None:
        overrides["aws"] = aws
    config = stage_settings(config_file, EVAL_LAYOUT, {"evaluate": overrides}).configs["evaluate"]
    if config.aws is None:
        config = config.replace(aws=aws)
    if config.output_dir is None:
        config = config.replace(output_dir="evaluation")
    template = chat_template.read_text(encoding="utf-8") if chat_template is not None else None
    invoke = InvokeConfig(
        chat_template=template, aws=config.aws or aws, max_concurrency=config.max_concurrency
    )
    progress = err.print if not as_json else None
    targets = {}
    if baseline is not None:
        targets["baseline"] = client_for(baseline, invoke, progress)
    targets["model"] = client_for(model, invoke, progress)
    evaluator = Evaluator(config, progress=progress, progress_bar=False if as_json else None)
    comparison = evaluator.evaluate_many(targets, dataset)
    if as_json:
        print_json(comparison.model_dump(mode="json"))  # no NaN: a metric with no scored record is null
        return
    for line in comparison.summary():
        typer.echo(line)
    for kind in ("html", "markdown", "json", "records"):
        err.print(f"{kind + ':':10}{comparison.files[kind]}", soft_wrap=True)
