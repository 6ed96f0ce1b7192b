"""Which InvokeModel format a call uses, and reading imported-model ARNs.

Bedrock does not report an imported model's formats. They follow from its architecture, whether
Bedrock found a chat template (``instructSupported``) and when it was imported
(:meth:`~bedrock_ft.artifacts.ImportedModel.accepted_formats`; the formats themselves are the table in
:mod:`bedrock_ft.formats`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from bedrock_ft.errors import RequestValidationError, UnsupportedFormatError
from bedrock_ft.formats import CONVERSE, FORMAT_NAMES, NATIVE_FORMATS, NEW_FORMATS, get_format

if TYPE_CHECKING:
    from bedrock_ft.artifacts import ImportedModel

__all__ = ["Call", "choose_format", "parse_imported_model_arn"]

_ARN = re.compile(
    r"^arn:aws(?:-[a-z]+)*:bedrock:(?P<region>[a-z0-9-]{1,20}):(?P<account>[0-9]{12}):"
    r"(?P<kind>[a-z-]+)/(?P<id>[A-Za-z0-9._:-]+)$"
)


def parse_imported_model_arn(arn: str) -> tuple[str, str]:
    """``(region, model id)`` of an imported-model ARN, or :class:`RequestValidationError` saying what
    the string is instead (a foundation model, a custom model, not an ARN at all)."""
    expected = "arn:aws:bedrock:REGION:ACCOUNT:imported-model/ID"
    if not isinstance(arn, str) or not arn.strip():
        raise RequestValidationError(f"model ARN: expected {expected}, got {arn!r}")
    if not arn.startswith("arn:"):
        raise RequestValidationError(f"model ARN: {arn!r} is not an ARN; expected {expected}")
    found = _ARN.match(arn)
    if found is None:
        raise RequestValidationError(f"model ARN: {arn!r} is not a Bedrock ARN; expected {expected}")
    if found["kind"] != "imported-model":
        raise RequestValidationError(
            f"model ARN: {arn!r} is a {found['kind']} ARN, not an imported model's; expected {expected}"
        )
    if not re.fullmatch(r"[a-z0-9]{12}", found["id"]):
        raise RequestValidationError(f"model ARN: {arn!r} has a malformed model id; expected 12 of [a-z0-9]")
    return found["region"], found["id"]


Call = Literal["complete", "chat"]


def choose_format(model: ImportedModel, requested: str, call: Call) -> str:
    """The body format a ``complete()`` or ``chat()`` call sends. ``requested`` is a format name or
    ``"auto"``. Raises :class:`UnsupportedFormatError` before anything is sent when the model can't
    take it."""
    if requested != "auto" and requested not in (*FORMAT_NAMES, CONVERSE):
        known = ", ".join(("auto", *FORMAT_NAMES))
        raise UnsupportedFormatError(f"unknown api_format {requested!r} (known: {known})")
    accepted = model.accepted_formats()
    arch = model.registered_architecture()
    if requested == "auto":
        if model.legacy:
            native = [f for f in accepted if f in NATIVE_FORMATS]
            if not native:
                raise UnsupportedFormatError(
                    f"{model.model_name} was imported before 2025-11-11 and takes only its family's native "
                    f"body, which bedrock-ft doesn't know for architecture {model.architecture!r}; set "
                    "InvokeConfig.api_format"
                )
            return native[0]
        if call == "chat" and "OpenAIChatCompletion" in accepted:
            return "OpenAIChatCompletion"
        # BedrockCompletion, except for families that take only the OpenAI formats (GPT-OSS).
        for name in ("BedrockCompletion", "OpenAICompletion"):
            if name in accepted:
                return name
        raise UnsupportedFormatError(
            f"{model.model_name} takes no completion format bedrock-ft knows (it takes: "
            f"{', '.join(accepted) or 'unknown'}); set InvokeConfig.api_format"
        )
    if requested == CONVERSE:
        raise UnsupportedFormatError("Converse is an API of its own: call converse()")
    # An explicit format is refused only on facts: the formats list above is partly inferred (Bedrock
    # reports none), and a caller who knows better must be able to say so.
    reason = None
    if requested in NATIVE_FORMATS:
        own = arch.native_format.name if arch is not None and arch.native_format is not None else None
        if arch is not None and own != requested:
            reason = f"the {requested} body is for {requested} models; this is a {arch.name} model"
    elif requested in NEW_FORMATS and model.legacy:
        reason = "it was imported before 2025-11-11 and takes only its family's native body"
    elif requested == "OpenAIChatCompletion" and model.instruct_supported is False:
        reason = "Bedrock found no chat template in it"
    elif (
        requested in NEW_FORMATS and arch is not None and requested not in (f.value for f in arch.api_formats)
    ):
        reason = f"{arch.name} models take only {', '.join(f.value for f in arch.api_formats)}"
    if reason is not None:
        takes = ", ".join(f for f in accepted if f != CONVERSE) or "unknown"
        raise UnsupportedFormatError(
            f"{model.model_name} does not take the {requested} format: {reason} (it takes: {takes})"
        )
    if call == "complete" and get_format(requested).takes_messages:
        raise UnsupportedFormatError(f"{requested} takes messages, not a prompt: call chat()")
    return requested
