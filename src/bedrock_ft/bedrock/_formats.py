"""Which InvokeModel formats an imported model takes, and which one a call uses.

Bedrock does not report an imported model's formats. They follow from its architecture, whether
Bedrock found a chat template (``instructSupported``) and when it was imported: models imported
after 2025-11-11 take BedrockCompletion, OpenAICompletion and OpenAIChatCompletion (the last one only
with a chat template); earlier ones take their family's native body only.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal

from bedrock_ft.errors import RequestValidationError, UnsupportedFormatError

if TYPE_CHECKING:
    from bedrock_ft.architectures import Architecture
    from bedrock_ft.artifacts import ImportedModel

__all__ = [
    "LEGACY_CUTOFF",
    "NEW_FORMATS",
    "accepted_formats",
    "architecture_of",
    "choose_format",
    "parse_imported_model_arn",
]

LEGACY_CUTOFF = datetime(2025, 11, 11, tzinfo=timezone.utc)
"""Models imported after this date take the three formats below; earlier ones their native body."""

NEW_FORMATS = ("BedrockCompletion", "OpenAICompletion", "OpenAIChatCompletion")
CONVERSE = "Converse"

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


def architecture_of(model: ImportedModel) -> Architecture | None:
    from bedrock_ft.architectures import get_architecture
    from bedrock_ft.errors import RegistryError

    if not model.architecture:
        return None
    try:
        return get_architecture(model.architecture)
    except RegistryError:
        return None


def is_legacy(model: ImportedModel) -> bool:
    """Imported before the three formats existed: only the family's native body works."""
    if model.api_formats:
        return not any(f in NEW_FORMATS for f in model.api_formats)
    created = model.creation_time
    if created is None:
        return False
    if created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    return created < LEGACY_CUTOFF


def accepted_formats(model: ImportedModel, arch: Architecture | None) -> tuple[str, ...]:
    """The formats ``model`` takes: what its artifact records, else what follows from the facts above.
    ``Converse`` is listed where the Converse API works."""
    if model.api_formats:
        return tuple(model.api_formats)
    formats: tuple[str, ...]
    if is_legacy(model):
        native = arch.native_format.name if arch is not None and arch.native_format is not None else None
        formats = (native,) if native else ()
    else:
        formats = tuple(f.value for f in arch.api_formats) if arch is not None else NEW_FORMATS
        if model.instruct_supported is False:
            formats = tuple(f for f in formats if f != "OpenAIChatCompletion")
    if model.instruct_supported is not False and (arch is None or arch.supports_converse):
        formats += (CONVERSE,)
    return formats


Call = Literal["complete", "chat"]


def choose_format(model: ImportedModel, arch: Architecture | None, requested: str, call: Call) -> str:
    """The body format a ``complete()`` or ``chat()`` call sends. ``requested`` is a format name or
    ``"auto"``. Raises :class:`UnsupportedFormatError` before anything is sent when the model can't
    take it."""
    accepted = accepted_formats(model, arch)
    if requested == "auto":
        if is_legacy(model):
            native = [f for f in accepted if f in ("mistral", "llama")]
            if not native:
                raise UnsupportedFormatError(
                    f"{model.model_name} was imported before 2025-11-11 and takes only its family's native "
                    f"body, which bedrock-ft doesn't know for architecture {model.architecture!r}; set "
                    "InvokeConfig.api_format"
                )
            return native[0]
        if call == "chat" and "OpenAIChatCompletion" in accepted:
            return "OpenAIChatCompletion"
        return "BedrockCompletion"
    if requested == CONVERSE:
        raise UnsupportedFormatError("Converse is an API of its own: call converse()")
    # An explicit format is refused only on facts: the formats list above is partly inferred (Bedrock
    # reports none), and a caller who knows better must be able to say so.
    reason = None
    if requested in ("mistral", "llama"):
        own = arch.native_format.name if arch is not None and arch.native_format is not None else None
        if arch is not None and own != requested:
            reason = f"the {requested} body is for {requested} models; this is a {arch.name} model"
    elif requested in NEW_FORMATS and is_legacy(model):
        reason = "it was imported before 2025-11-11 and takes only its family's native body"
    elif requested == "OpenAIChatCompletion" and model.instruct_supported is False:
        reason = "Bedrock found no chat template in it"
    if reason is not None:
        takes = ", ".join(f for f in accepted if f != CONVERSE) or "unknown"
        raise UnsupportedFormatError(
            f"{model.model_name} does not take the {requested} format: {reason} (it takes: {takes})"
        )
    if call == "complete" and requested == "OpenAIChatCompletion":
        raise UnsupportedFormatError("OpenAIChatCompletion takes messages, not a prompt: call chat()")
    return requested
