"""The ``bedrock-ft`` command line.

Every subcommand prints progress to stderr, exits non-zero with a one-line reason on error, and with
``--json`` prints its result as JSON on stdout. Stages that are not built yet exit with status 2.
The commands live in ``_stages`` (dataset build, train, merge, validate, import), ``_invoke`` (invoke,
evaluate) and ``_admin`` (quickstart, architectures, models, local serve).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated

import typer

from bedrock_ft._version import __version__
from bedrock_ft.cli import _admin, _invoke, _jobs, _stages
from bedrock_ft.cli._common import JsonOpt, err
from bedrock_ft.errors import BedrockFTError

__all__ = ["NOT_IMPLEMENTED", "app", "main"]

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
jobs_app = typer.Typer(
    name="jobs",
    help="SageMaker training jobs bedrock-ft submitted: status, wait, stop.",
    no_args_is_help=True,
)
for _sub in (dataset_app, local_app, models_app, jobs_app):
    app.add_typer(_sub)

NOT_IMPLEMENTED = 2


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


# Pipeline order, then the commands around it.
app.command()(_admin.quickstart)
dataset_app.command("build")(_stages.dataset_build)
app.command()(_stages.train)
app.command()(_stages.merge)
app.command()(_stages.validate)
app.command("import")(_stages.import_cmd)
app.command()(_invoke.invoke)
app.command()(_invoke.evaluate)
app.command("architectures")(_admin.architectures)
models_app.command("list")(_admin.models_list)
models_app.command("delete")(_admin.models_delete)
local_app.command("serve")(_admin.local_serve)
jobs_app.command("status")(_jobs.jobs_status)
jobs_app.command("wait")(_jobs.jobs_wait)
jobs_app.command("stop")(_jobs.jobs_stop)


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
