"""The architecture registry: what bedrock-ft knows about each model family.

Built-ins register themselves with the same call third parties use, :func:`register_architecture`.
Packages can also contribute architectures through the ``bedrock_ft.architectures`` entry-point
group; those are loaded the first time the registry is read.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bedrock_ft._findings import Finding
from bedrock_ft.errors import RegistryError
from bedrock_ft.formats import CONVERSE, ApiFormat, BodyFormat

__all__ = [
    "ENTRY_POINT_GROUP",
    "ApiFormat",
    "Architecture",
    "NativeFormat",
    "PreflightRule",
    "architecture_for_config",
    "get_architecture",
    "list_architectures",
    "register_architecture",
    "unregister_architecture",
]

ENTRY_POINT_GROUP = "bedrock_ft.architectures"

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

GB = 1_000_000_000


ALL_API_FORMATS = tuple(ApiFormat)

NativeFormat = BodyFormat
"""The base family's own InvokeModel body (a legacy entry of :data:`bedrock_ft.formats.FORMATS`)."""


PreflightRule = Callable[[Mapping[str, Any]], Iterable[Finding]]
"""An architecture-specific check: takes the parsed ``config.json``, yields findings."""


@dataclass(frozen=True)
class Architecture:
    """Everything bedrock-ft needs to know about one model family.

    ``model_types`` are the Hugging Face ``config.json`` ``model_type`` values that belong to the
    family; ``hf_architectures`` are the ``architectures`` class names Bedrock accepts for it.
    """

    name: str
    model_types: tuple[str, ...]
    hf_architectures: tuple[str, ...]
    description: str = ""
    bedrock_supported: bool = True
    api_formats: tuple[ApiFormat, ...] = ALL_API_FORMATS
    supports_converse: bool = True
    native_format: BodyFormat | None = None
    lora_target_modules: tuple[str, ...] = ("all-linear",)
    decoder_layers: tuple[str, ...] = ()
    """The transformer block classes FSDP shards one by one (``LlamaDecoderLayer``); empty: the model
    class's own ``_no_split_modules``."""
    encoder_decoder: bool = False
    multimodal: bool = False
    preflight_rules: tuple[PreflightRule, ...] = field(default=(), compare=False)

    @property
    def max_weight_bytes(self) -> int:
        """Custom Model Import's weight size limit: 200 GB for text models, 100 GB multimodal."""
        return 100 * GB if self.multimodal else 200 * GB

    def formats(self, *, legacy: bool = False, instruct_supported: bool | None = None) -> tuple[str, ...]:
        """The invoke formats a model of this family takes once imported: its native body when it was
        imported before 2025-11-11 (``legacy``), else its API formats, without the chat format when
        Bedrock found no chat template (``instruct_supported=False``); ``Converse`` where it works."""
        if legacy:
            found: tuple[str, ...] = (self.native_format.name,) if self.native_format is not None else ()
        else:
            found = tuple(f.value for f in self.api_formats)
            if instruct_supported is False:
                found = tuple(f for f in found if f != ApiFormat.OPENAI_CHAT_COMPLETION.value)
        if instruct_supported is not False and self.supports_converse:
            found += (CONVERSE,)
        return found

    def check_config(self, config: Mapping[str, Any]) -> list[Finding]:
        """Run this architecture's own preflight rules on a parsed ``config.json``."""
        findings: list[Finding] = []
        for rule in self.preflight_rules:
            findings.extend(rule(config))
        return findings


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._by_name: dict[str, Architecture] = {}
        self._entry_points_loaded = False

    def register(self, arch: Architecture, *, replace: bool) -> Architecture:
        _validate(arch)
        with self._lock:
            if arch.name in self._by_name and not replace:
                raise RegistryError(
                    f"architecture {arch.name!r} is already registered; pass replace=True to override it"
                )
            for other in self._by_name.values():
                if other.name == arch.name:
                    continue
                for attr, label in (("model_types", "model_type"), ("hf_architectures", "class")):
                    taken = set(getattr(other, attr)) & set(getattr(arch, attr))
                    if taken:
                        raise RegistryError(
                            f"architecture {arch.name!r}: {label} {sorted(taken)[0]!r} already belongs to "
                            f"architecture {other.name!r}"
                        )
            self._by_name[arch.name] = arch
        return arch

    def unregister(self, name: str) -> Architecture:
        with self._lock:
            try:
                return self._by_name.pop(name)
            except KeyError:
                raise RegistryError(f"architecture {name!r} is not registered") from None

    def all(self) -> dict[str, Architecture]:
        self._load_entry_points()
        with self._lock:
            return dict(self._by_name)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        # The (re-entrant) lock is held for the whole load, so no thread reads a half-loaded registry;
        # a plugin module may still call register_architecture itself while it is imported.
        with self._lock:
            if self._entry_points_loaded:
                return
            try:
                self._load_entry_points_locked()
            finally:
                self._entry_points_loaded = True

    def _load_entry_points_locked(self) -> None:
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
                if callable(obj) and not isinstance(obj, Architecture):
                    obj = obj()
                found = list(obj) if isinstance(obj, list | tuple) else [obj]
                for arch in found:
                    if not isinstance(arch, Architecture):
                        raise RegistryError(f"expected an Architecture, got {type(arch).__name__}")
                    if self._by_name.get(arch.name) is not arch:  # a module may have registered it already
                        self.register(arch, replace=False)
            except Exception as exc:
                # One broken plugin must not take down every other use of the registry.
                warnings.warn(
                    f"{ENTRY_POINT_GROUP} entry point {ep.name!r} ({ep.value}) was not loaded: {exc}",
                    RuntimeWarning,
                    stacklevel=4,
                )


def _validate(arch: Any) -> None:
    if not isinstance(arch, Architecture):
        raise RegistryError(f"register_architecture expects an Architecture, got {type(arch).__name__}")
    if not isinstance(arch.name, str) or not _NAME_RE.match(arch.name):
        raise RegistryError(
            f"architecture name {arch.name!r} is malformed: use lowercase letters, digits and '_', "
            "starting with a letter (at most 64 characters)"
        )
    for attr in ("model_types", "hf_architectures"):
        values = getattr(arch, attr)
        if not isinstance(values, tuple) or not values:
            raise RegistryError(f"architecture {arch.name!r}: {attr} must be a non-empty tuple of names")
        if not all(isinstance(v, str) and v.strip() for v in values):
            raise RegistryError(
                f"architecture {arch.name!r}: every entry of {attr} must be a non-empty string"
            )
    if not arch.lora_target_modules or not all(isinstance(m, str) and m for m in arch.lora_target_modules):
        raise RegistryError(f"architecture {arch.name!r}: lora_target_modules must name at least one module")
    if not isinstance(arch.decoder_layers, tuple) or not all(
        isinstance(m, str) and m.isidentifier() for m in arch.decoder_layers
    ):
        raise RegistryError(f"architecture {arch.name!r}: decoder_layers must be a tuple of class names")
    if ApiFormat.OPENAI_CHAT_COMPLETION not in arch.api_formats and arch.supports_converse:
        raise RegistryError(
            f"architecture {arch.name!r}: Converse needs the chat format; "
            "set supports_converse=False or add OpenAIChatCompletion"
        )


_registry = _Registry()


def register_architecture(arch: Architecture, *, replace: bool = False) -> Architecture:
    """Add an architecture. Refuses a malformed one, a taken name or a model_type another one owns."""
    return _registry.register(arch, replace=replace)


def unregister_architecture(name: str) -> Architecture:
    """Remove a registered architecture (mainly for tests and plugin development)."""
    return _registry.unregister(name)


def list_architectures() -> tuple[str, ...]:
    """Names of every registered architecture, sorted."""
    return tuple(sorted(_registry.all()))


def get_architecture(name: str) -> Architecture:
    """Look an architecture up by its name, a Hugging Face ``model_type`` or an ``architectures`` class.

    An unknown name raises :class:`~bedrock_ft.errors.RegistryError` listing the supported ones.
    """
    registered = _registry.all()
    if name in registered:
        return registered[name]
    for arch in registered.values():
        if name in arch.model_types or name in arch.hf_architectures:
            return arch
    raise RegistryError(
        f"unknown architecture {name!r}; supported: {', '.join(sorted(registered))}. "
        "Register a new one with bedrock_ft.register_architecture() (see docs/adding-an-architecture.md)"
    )


def architecture_for_config(config: Mapping[str, Any]) -> Architecture:
    """The architecture of a parsed Hugging Face ``config.json`` (by ``model_type``, then class)."""
    registered = _registry.all()
    model_type = config.get("model_type")
    classes = config.get("architectures") or []
    for arch in registered.values():
        if model_type in arch.model_types:
            return arch
    for arch in registered.values():
        if any(c in arch.hf_architectures for c in classes):
            return arch
    shown = model_type if model_type is not None else (classes[0] if classes else None)
    raise RegistryError(
        f"unknown architecture {shown!r} (model_type={model_type!r}, architectures={list(classes)}); "
        f"supported: {', '.join(sorted(registered))}"
    )
