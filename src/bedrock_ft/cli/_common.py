"""What every command shares: the consoles, the common options, JSON output, and how a command turns
its config file and flags into the stage's configs (one place, for every stage)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from bedrock_ft.config import StageFile, StageSettings, load_stage_file

__all__ = [
    "JsonOpt",
    "ProfileOpt",
    "RegionOpt",
    "client_for",
    "err",
    "flags",
    "print_json",
    "stage_settings",
]

err = Console(stderr=True, highlight=False)
"""Progress and notes go to stderr; results (and --json) to stdout."""

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
RegionOpt = Annotated[str | None, typer.Option(help="AWS region (default: AWS_REGION, the profile).")]
ProfileOpt = Annotated[str | None, typer.Option(help="AWS profile.")]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def say(message: str) -> None:
    """A stage's progress line, as plain text (messages hold brackets that are not rich markup)."""
    err.print(message, soft_wrap=True, markup=False)


def flags(**values: Any) -> dict[str, Any]:
    """The config fields a command's flags set: those given (not None). A switch passes its field's
    value when it is on and None when it is off (``overwrite=overwrite or None``), so a flag left out
    never overrides the config file."""
    return {key: value for key, value in values.items() if value is not None}


def stage_settings(
    config: Path | None,
    layout: StageFile,
    overrides: Mapping[str, Mapping[str, Any]],
    *,
    section: str | None = None,
    input_value: str | None = None,
) -> StageSettings:
    """The stage's input and configs from its config file (or none) with the flags applied, through the
    one loader every stage uses; the input given on the command line wins over the file's."""
    return load_stage_file(config, layout, overrides=overrides, section=section, input=input_value)


def client_for(model: str, config: Any, progress: Callable[[str], None] | None) -> Any:
    """An ImportedModelClient from an imported model ARN or an ImportedModel manifest."""
    from bedrock_ft.runtime import ImportedModelClient

    if model.startswith("arn:"):
        return ImportedModelClient.from_arn(model, config, progress=progress)
    return ImportedModelClient(model, config, progress=progress)
