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
dataset_app = typer.Typer(help="Build SFT datasets.", no_args_is_help=True)
local_app = typer.Typer(help="The local Bedrock and local S3.", no_args_is_help=True)
models_app = typer.Typer(help="Imported models: list, delete.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")
app.add_typer(local_app, name="local")
app.add_typer(models_app, name="models")

err = Console(stderr=True, highlight=False)
NOT_IMPLEMENTED = 2

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
ConfigArg = Annotated[Path | None, typer.Argument(help="Config file (YAML, TOML or JSON).")]


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


def _not_implemented(what: str) -> None:
    err.print(f"bedrock-ft {what}: not implemented yet")
    raise typer.Exit(NOT_IMPLEMENTED)


@app.command()
def run(config: ConfigArg = None, as_json: JsonOpt = False) -> None:
    """Run the whole pipeline from one config file."""
    _not_implemented("run")


@dataset_app.command("build")
def dataset_build(config: ConfigArg = None, as_json: JsonOpt = False) -> None:
    """Build the train/test splits (DatasetBuilder)."""
    _not_implemented("dataset build")


@app.command()
def train(config: ConfigArg = None, as_json: JsonOpt = False) -> None:
    """Fine-tune with QLoRA (QLoRATrainer)."""
    _not_implemented("train")


@app.command()
def merge(config: ConfigArg = None, as_json: JsonOpt = False) -> None:
    """Merge the adapter into the base model (AdapterMerger)."""
    _not_implemented("merge")


@app.command()
def validate(
    model_dir: Annotated[Path | None, typer.Argument(help="Model directory to check.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a model directory against the Custom Model Import rules."""
    _not_implemented("validate")


@app.command("import")
def import_(config: ConfigArg = None, as_json: JsonOpt = False) -> None:
    """Upload to S3 and run a Custom Model Import job (BedrockImporter)."""
    _not_implemented("import")


@app.command()
def invoke(config: ConfigArg = None, as_json: JsonOpt = False) -> None:
    """Invoke an imported model (ImportedModelClient)."""
    _not_implemented("invoke")


@app.command()
def evaluate(config: ConfigArg = None, as_json: JsonOpt = False) -> None:
    """Evaluate with fmeval's QA accuracy (Evaluator)."""
    _not_implemented("evaluate")


@local_app.command("serve")
def local_serve(as_json: JsonOpt = False) -> None:
    """Serve the local S3 and local Bedrock on loopback."""
    _not_implemented("local serve")


@models_app.command("list")
def models_list(as_json: JsonOpt = False) -> None:
    """List imported models."""
    _not_implemented("models list")


@models_app.command("delete")
def models_delete(as_json: JsonOpt = False) -> None:
    """Delete an imported model."""
    _not_implemented("models delete")


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
