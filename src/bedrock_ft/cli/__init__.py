"""The ``bedrock-ft`` command line.

Every subcommand prints progress to stderr, exits non-zero with a one-line reason on error, and with
``--json`` prints its result as JSON on stdout. The commands live in ``_run`` (run: the whole
pipeline), ``_stages`` (dataset build, train, merge, validate, import), ``_invoke`` (invoke, evaluate),
``_jobs`` (SageMaker jobs) and ``_admin`` (quickstart, architectures, models, local serve).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bedrock_ft._version import __version__
from bedrock_ft.cli import _admin, _invoke, _jobs, _run, _stages
from bedrock_ft.cli._common import err
from bedrock_ft.errors import BedrockFTError

__all__ = ["app", "main"]

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
app.command()(_run.run)
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
