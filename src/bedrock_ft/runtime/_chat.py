"""Messages: checked before sending, and rendered with the model's training chat template when a chat
goes out as a prompt (a model Bedrock found no template in, or a legacy native format).

The template is the one the model was trained with, carried in its ImportedModel artifact: never a
guessed one (the seed trained on Human/Assistant and then invoked with ``[INST]``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bedrock_ft.errors import RequestValidationError

__all__ = ["ChatRenderer", "check_messages", "check_prompt", "has_images", "has_tool_turns"]

ROLES = ("system", "user", "assistant", "tool")


def check_prompt(prompt: Any, *, call: str) -> str:
    if not isinstance(prompt, str):
        raise RequestValidationError(f"{call}: the prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise RequestValidationError(f"{call}: the prompt is empty")
    return prompt


def check_messages(messages: Any, *, call: str) -> list[dict[str, Any]]:
    """``messages`` as plain ``{"role", "content"}`` dicts, or :class:`RequestValidationError` naming the
    first bad message. Content may be a string or OpenAI content parts: text parts are joined into one
    string, unless the message also has ``image_url`` parts, which keep the message's parts as they are
    (:func:`has_images`). A tool-calling turn goes back as OpenAI's chat completions API has it: an
    ``assistant`` message with ``tool_calls`` (its content may be None), then a ``tool`` message with the
    ``tool_call_id`` it answers (:func:`has_tool_turns`)."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        kind = type(messages).__name__
        raise RequestValidationError(
            f"{call}: messages must be a list of {{'role', 'content'}} dicts, got {kind}"
        )
    if not messages:
        raise RequestValidationError(f"{call}: messages is empty; give at least one user message")
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        where = f"{call}: messages[{index}]"
        if not isinstance(message, Mapping):
            raise RequestValidationError(f"{where} must be a mapping with 'role' and 'content'")
        role = message.get("role")
        if role not in ROLES:
            raise RequestValidationError(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}")
        content = message.get("content")
        if isinstance(content, list):
            content = _parts(content, where)
        checked: dict[str, Any] = {"role": str(role), "content": content}
        if role == "assistant" and "tool_calls" in message:
            checked["tool_calls"] = _tool_calls(message["tool_calls"], where)
            if content is None:
                checked["content"] = content = ""
        if role == "tool":
            if not isinstance(message.get("tool_call_id"), str) or not message["tool_call_id"]:
                raise RequestValidationError(f"{where}: a tool message needs the tool_call_id it answers")
            checked["tool_call_id"] = message["tool_call_id"]
        if not isinstance(content, (str, list)):
            raise RequestValidationError(f"{where}.content must be a string, got {type(content).__name__}")
        extra = sorted(set(message) - set(checked))
        if extra:
            raise RequestValidationError(f"{where}: unsupported key(s) {', '.join(extra)}")
        out.append(checked)
    if all(m["role"] == "system" for m in out):
        raise RequestValidationError(f"{call}: messages hold only system messages; add a user message")
    return out


def _parts(parts: list[Any], where: str) -> str | list[dict[str, Any]]:
    """OpenAI content parts: text parts joined into a string, or (with an image) the parts, checked."""
    images = False
    for number, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text" and isinstance(part.get("text"), str):
            continue
        if kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else None
            if not isinstance(url, str) or not url.startswith(IMAGE_URL_PREFIXES):
                raise RequestValidationError(
                    f"{where}.content[{number}]: an image_url part needs "
                    "{'url': 'data:image/...;base64,...'} (or an http(s) URL)"
                )
            images = True
            continue
        raise RequestValidationError(
            f"{where}.content[{number}]: only text and image_url parts are supported"
        )
    if images:
        return [dict(p) for p in parts]
    return "".join(str(p["text"]) for p in parts)


IMAGE_URL_PREFIXES = ("data:image/", "https://", "http://")


def _tool_calls(calls: Any, where: str) -> list[dict[str, Any]]:
    """An assistant message's ``tool_calls``, in OpenAI's shape (``Completion.as_message()`` gives them
    so)."""
    if not isinstance(calls, list) or not calls:
        raise RequestValidationError(f"{where}.tool_calls must be a non-empty list of tool calls")
    out = []
    for number, call in enumerate(calls):
        function = call.get("function") if isinstance(call, Mapping) else None
        if (
            not isinstance(function, Mapping)
            or not isinstance(call.get("id"), str)
            or not isinstance(function.get("name"), str)
            or not isinstance(function.get("arguments"), str)
        ):
            raise RequestValidationError(
                f"{where}.tool_calls[{number}] must be {{'id': ..., 'type': 'function', 'function': "
                "{'name': ..., 'arguments': '<JSON text>'}}"
            )
        out.append(
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": function["name"], "arguments": function["arguments"]},
            }
        )
    return out


def has_tool_turns(messages: Sequence[Mapping[str, Any]]) -> bool:
    """True when checked messages hold a tool call or a tool's result, which only OpenAIChatCompletion
    messages carry."""
    return any(m["role"] == "tool" or "tool_calls" in m for m in messages)


def has_images(messages: Sequence[Mapping[str, Any]]) -> bool:
    """True when a checked message keeps content parts, which it does only for images."""
    return any(isinstance(m.get("content"), list) for m in messages)


class ChatRenderer:
    """Renders messages with one chat template, as ``transformers``' ``apply_chat_template`` would,
    with a generation prompt. Compiled once, on first use; safe to share between threads."""

    def __init__(
        self, template: str, special_tokens: Mapping[str, str] | None = None, *, strip_bos: bool = False
    ) -> None:
        self.template = template
        self.special_tokens = dict(special_tokens or {})
        self.strip_bos = strip_bos
        self._render: Callable[..., str] | None = None
        self._lock = threading.Lock()

    def _compiled(self) -> Callable[..., str]:
        with self._lock:
            if self._render is None:
                from bedrock_ft.chat_templates import ChatTemplate

                self._render = ChatTemplate("custom", self.template).renderer(self.special_tokens)
            return self._render

    def render(self, messages: Sequence[Mapping[str, str]], *, call: str) -> str:
        """The prompt for ``messages``. A sequence the template refuses raises
        :class:`RequestValidationError` with the template's own reason."""
        from jinja2.exceptions import TemplateError

        render = self._compiled()
        try:
            return render(messages, add_generation_prompt=True)
        except TemplateError as exc:
            raise RequestValidationError(
                f"{call}: the model's chat template refused the messages: {exc}"
            ) from None

    def as_prompt(self, messages: Sequence[Mapping[str, str]], *, call: str) -> str:
        """:meth:`render`, without a leading BOS token when the service adds one itself (a completion
        prompt is tokenized with special tokens, so a rendered BOS would be doubled)."""
        text = self.render(messages, call=call)
        bos = self.special_tokens.get("bos_token")
        if bos and self.strip_bos and text.startswith(bos):
            text = text[len(bos) :]
        return text
