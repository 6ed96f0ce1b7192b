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
    as_json: JsonOpt = False,
) -> None:
    """Run the quickstart on the embedded model (SmolLM2-135M-Instruct), fully offline."""
    from bedrock_ft.models import chat_generate, embedded_model

    with _steps() as step:
        step("embedded model: looking in the cache")
        model_dir = embedded_model(cache=cache, progress=step)
        step(f"generating an answer with {model_dir.name}")
        answer = chat_generate(model_dir, [{"role": "user", "content": question}])
    if as_json:
        _print_json({"model_dir": str(model_dir), "question": question, "answer": answer})
        return
    err.print(f"embedded model: [bold]{model_dir}[/bold]", soft_wrap=True)
    typer.echo(f"Q: {question}")
    typer.echo(f"A: {answer}")


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


# --- stages still to come ---------------------------------------------------------------------------

# (group, name, help). Each becomes a real command when its stage lands; until then it exits with 2.
_PENDING: list[tuple[typer.Typer, str, str]] = [
    (app, "run", "Run the whole pipeline from one config file."),
    (dataset_app, "build", "Build the train/test splits (DatasetBuilder)."),
    (app, "train", "Fine-tune with QLoRA (QLoRATrainer)."),
    (app, "merge", "Merge the adapter into the base model (AdapterMerger)."),
    (app, "validate", "Check a model directory against the Custom Model Import rules."),
    (app, "import", "Upload to S3 and run a Custom Model Import job (BedrockImporter)."),
    (app, "invoke", "Invoke an imported model (ImportedModelClient)."),
    (app, "evaluate", "Evaluate with fmeval's QA accuracy (Evaluator)."),
    (local_app, "serve", "Serve the local S3 and local Bedrock on loopback."),
    (models_app, "list", "List imported models."),
    (models_app, "delete", "Delete an imported model."),
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
        reason = "; ".join(line.strip(" -") for line in str(exc).splitlines() if line.strip())
        err.print(f"[red]error:[/red] {reason}", soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
