"""Chat templates: the Jinja text that turns a conversation into the model's prompt string.

The template a dataset was built with is recorded in its artifact, so training, invoke and evaluation
all use the same one (the seed trained on Human/Assistant and invoked with ``[INST]``; never again).

- ``None`` (the default): the tokenizer's own template;
- a registered name: ``mistral``, ``llama3``, ``chatml``, ``human_assistant`` (the seed's), or one added
  with :func:`register_chat_template`;
- a Jinja string, or the path of a ``.jinja`` file.

Rendering mirrors ``transformers``' ``apply_chat_template`` (same sandboxed Jinja environment, the
tokenizer's special tokens as variables, ``raise_exception``, ``tojson``, ``{% generation %}``), so
the text counted here is the text trl trains on. jinja2 is imported only when rendering.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bedrock_ft.errors import ConfigError, ConfigProblem, RegistryError

__all__ = [
    "BUILTIN_TEMPLATES",
    "ChatTemplate",
    "get_chat_template",
    "list_chat_templates",
    "looks_like_jinja",
    "register_chat_template",
    "resolve_chat_template",
    "strip_generation_tags",
]

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

# Jinja string literals understand \n, so the templates below hold a backslash and an n, as in a
# tokenizer_config.json. Whitespace between tags is trimmed by the {%- -%} markers.
MISTRAL = r"""
{%- if messages[0]['role'] == 'system' -%}
  {%- set system = messages[0]['content'] -%}
  {%- set loop_messages = messages[1:] -%}
{%- else -%}
  {%- set system = '' -%}
  {%- set loop_messages = messages -%}
{%- endif -%}
{{- bos_token -}}
{%- for message in loop_messages -%}
  {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
    {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') -}}
  {%- endif -%}
  {%- if message['role'] == 'user' -%}
    {%- if loop.first and system -%}
      {{- '[INST] ' + system + '\n\n' + message['content'] + ' [/INST]' -}}
    {%- else -%}
      {{- '[INST] ' + message['content'] + ' [/INST]' -}}
    {%- endif -%}
  {%- else -%}
    {%- generation -%}{{- ' ' + message['content'] + eos_token -}}{%- endgeneration -%}
  {%- endif -%}
{%- endfor -%}
""".strip()

LLAMA3 = r"""
{{- bos_token -}}
{%- for message in messages -%}
  {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' -}}
  {%- if message['role'] == 'assistant' -%}
    {%- generation -%}{{- message['content'] | trim + '<|eot_id|>' -}}{%- endgeneration -%}
  {%- else -%}
    {{- message['content'] | trim + '<|eot_id|>' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
{%- endif -%}
""".strip()

CHATML = r"""
{%- for message in messages -%}
  {%- if message['role'] == 'assistant' -%}
    {{- '<|im_start|>assistant\n' -}}
    {%- generation -%}{{- message['content'] + '<|im_end|>' -}}{%- endgeneration -%}
    {{- '\n' -}}
  {%- else -%}
    {{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|im_start|>assistant\n' -}}
{%- endif -%}
""".strip()

# The seed notebook's Anthropic/Vicuna-style template: system text first, then Human:/Assistant: turns.
HUMAN_ASSISTANT = r"""
{%- for message in messages -%}
  {%- if message['role'] == 'system' -%}
    {{- message['content'] -}}
  {%- elif message['role'] == 'user' -%}
    {{- '\n\nHuman: ' + message['content'] + eos_token -}}
  {%- elif message['role'] == 'assistant' -%}
    {{- '\n\nAssistant: ' -}}
    {%- generation -%}{{- message['content'] + eos_token -}}{%- endgeneration -%}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '\n\nAssistant: ' -}}
{%- endif -%}
""".strip()


@dataclass(frozen=True)
class ChatTemplate:
    """A chat template: its name, its Jinja text, and the special tokens to use without a tokenizer."""

    name: str | None
    """Registered name; ``"tokenizer"`` for a tokenizer's own, ``"custom"`` for a Jinja string or file."""
    source: str
    default_tokens: Mapping[str, str] = field(default_factory=dict)
    """``bos_token``/``eos_token`` used when no tokenizer supplies them."""

    def renderer(self, special_tokens: Mapping[str, Any] | None = None) -> Callable[..., str]:
        """A compiled ``render(messages, add_generation_prompt=False) -> str``.

        ``special_tokens`` (a tokenizer's ``special_tokens_map``) win over the template's defaults.
        A syntax error raises ConfigError naming the line.
        """
        compiled = _compile(self.source, self.name)
        tokens = {**self.default_tokens}
        for key, value in (special_tokens or {}).items():
            if isinstance(value, str):
                tokens[key] = value

        def render(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = False) -> str:
            return str(
                compiled.render(
                    messages=list(messages),
                    tools=None,
                    documents=None,
                    add_generation_prompt=add_generation_prompt,
                    **tokens,
                )
            )

        return render


_TEMPLATE_DEFAULTS: dict[str, dict[str, str]] = {
    "mistral": {"bos_token": "<s>", "eos_token": "</s>"},
    "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "chatml": {"bos_token": "", "eos_token": "<|im_end|>"},
    "human_assistant": {"bos_token": "<s>", "eos_token": "</s>"},
}

BUILTIN_TEMPLATES: dict[str, str] = {
    "mistral": MISTRAL,
    "llama3": LLAMA3,
    "chatml": CHATML,
    "human_assistant": HUMAN_ASSISTANT,
}


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, ChatTemplate] = {}

    def register(self, template: ChatTemplate, *, replace: bool) -> ChatTemplate:
        name = template.name
        if not isinstance(name, str) or not _NAME_RE.match(name) or name in ("tokenizer", "custom"):
            raise RegistryError(
                f"chat template name {name!r} is malformed or reserved: use lowercase letters, digits and "
                "'_', starting with a letter; 'tokenizer' and 'custom' are reserved"
            )
        if not isinstance(template.source, str) or not looks_like_jinja(template.source):
            raise RegistryError(f"chat template {name!r}: expected a Jinja template string")
        with self._lock:
            if name in self._by_name and not replace:
                raise RegistryError(
                    f"chat template {name!r} is already registered; pass replace=True to override it"
                )
            self._by_name[name] = template
        return template

    def get(self, name: str) -> ChatTemplate | None:
        with self._lock:
            return self._by_name.get(name)

    def names(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(self._by_name))


_registry = _Registry()


def register_chat_template(
    name: str,
    source: str,
    *,
    bos_token: str = "",
    eos_token: str = "",
    replace: bool = False,
) -> ChatTemplate:
    """Register a named Jinja chat template; ``bos_token``/``eos_token`` apply when no tokenizer is given."""
    template = ChatTemplate(
        name=name, source=source, default_tokens={"bos_token": bos_token, "eos_token": eos_token}
    )
    return _registry.register(template, replace=replace)


def list_chat_templates() -> tuple[str, ...]:
    """Names of every registered chat template, sorted."""
    return _registry.names()


def get_chat_template(name: str) -> ChatTemplate:
    """A registered template; an unknown name raises RegistryError listing the known ones."""
    found = _registry.get(name)
    if found is None:
        raise RegistryError(_unknown_message(name))
    return found


def looks_like_jinja(value: str) -> bool:
    return "{{" in value or "{%" in value


def check_template_reference(value: str) -> None:
    """Raise ValueError unless ``value`` is a registered name, a Jinja string or a ``.jinja`` path."""
    if looks_like_jinja(value) or value.endswith(".jinja") or _registry.get(value) is not None:
        return
    raise ValueError(_unknown_message(value))


def _unknown_message(name: str) -> str:
    known = ", ".join(list_chat_templates())
    return (
        f"unknown chat template {name!r}; built-in and registered: {known}. "
        "Or give a Jinja template string, or the path of a .jinja file"
    )


def resolve_chat_template(value: str | None, tokenizer: Any = None) -> ChatTemplate | None:
    """The template a build uses: ``value`` as configured, or the tokenizer's own when it is None.

    Returns None only when neither is available. Unknown names and unreadable files raise ConfigError.
    """
    if value is None:
        if tokenizer is None:
            return None
        own = getattr(tokenizer, "chat_template", None)
        if isinstance(own, dict):  # several named templates: transformers uses "default"
            own = own.get("default")
        if not isinstance(own, str) or not own.strip():
            raise ConfigError(
                [
                    ConfigProblem(
                        "chat_template",
                        f"the tokenizer ({getattr(tokenizer, 'name_or_path', '?')}) has no chat template of "
                        f"its own; set one of {', '.join(list_chat_templates())} or a Jinja string",
                    )
                ]
            )
        return ChatTemplate(name="tokenizer", source=own)
    if looks_like_jinja(value):
        return ChatTemplate(name="custom", source=value)
    registered = _registry.get(value)
    if registered is not None:
        return registered
    if value.endswith(".jinja"):
        try:
            text = Path(value).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([ConfigProblem("chat_template", f"can't read {value}: {exc}")]) from None
        return ChatTemplate(name="custom", source=text)
    raise ConfigError([ConfigProblem("chat_template", _unknown_message(value))])


# --- exporting ---------------------------------------------------------------------------------------

_GEN_TAG = re.compile(r"\{%(?P<l>[-+]?)\s*(?P<end>end)?generation\s*(?P<r>[-+]?)%\}")


def strip_generation_tags(source: str) -> str:
    """``source`` without trl's ``{% generation %}``/``{% endgeneration %}`` markers, rendering the same text.

    The markers only tell trl which tokens are the assistant's; servers that render templates with
    another Jinja implementation may not know the tag, so exported models carry the template without
    them. Each becomes ``{% if true %}``/``{% endif %}`` with the same whitespace markers (``-``,
    ``+``): a block tag with the same trim rules around it, so the rendering is identical by
    construction, in every branch. (Deleting the tags instead changes what neighbouring tags trim.)
    """

    def replaced(m: re.Match[str]) -> str:
        return f"{{%{m['l']} {'endif' if m['end'] else 'if true'} {m['r']}%}}"

    return _GEN_TAG.sub(replaced, source)


# --- rendering ---------------------------------------------------------------------------------------


def _compile(source: str, name: str | None) -> Any:
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(Extension):  # type: ignore[misc]
        """``{% generation %}...{% endgeneration %}`` (trl's assistant-only loss marker): render the body."""

        tags = {"generation"}  # noqa: RUF012 - jinja's own API

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Callable[[], str]) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(
        x: Any,
        ensure_ascii: bool = False,
        indent: Any = None,
        separators: Any = None,
        sort_keys: bool = False,
    ) -> str:
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        label = f"{name!r} " if name else ""
        raise ConfigError(
            [
                ConfigProblem(
                    "chat_template", f"template {label}is not valid Jinja: line {exc.lineno}: {exc.message}"
                )
            ]
        ) from None


for _name, _source in BUILTIN_TEMPLATES.items():
    _tokens = _TEMPLATE_DEFAULTS[_name]
    register_chat_template(_name, _source, bos_token=_tokens["bos_token"], eos_token=_tokens["eos_token"])
