"""Exported chat templates lose trl's {% generation %} markers and render exactly as before."""

from __future__ import annotations

import pytest

from bedrock_ft.data.templates import BUILTIN_TEMPLATES, ChatTemplate, strip_generation_tags

CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " Hello!\n"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "3+3?"},
        {"role": "assistant", "content": "  6  "},
    ],
]


def _renders(source: str) -> list[str]:
    render = ChatTemplate("custom", source, {"bos_token": "<s>", "eos_token": "</s>"}).renderer()
    return [render(c, add_generation_prompt=p) for c in CONVERSATIONS for p in (False, True)]


TRICKY = {
    # block tags on their own lines: trim_blocks and lstrip_blocks decide the whitespace
    "own-lines": "{% for m in messages %}{% if m.role == 'assistant' %}\n  {% generation %}\n"
    "{{ m.content }}\n  {% endgeneration %}\n{% else %}{{ m.content }}\n{% endif %}{% endfor %}",
    # a neighbour's '-' would eat the text after the tag once the tag is gone: kept as an if block
    "neighbour-trim": "{% for m in messages %}{{ m.role -}}{% generation %}  {{ m.content }}"
    "{% endgeneration %}{% endfor %}",
}


@pytest.mark.parametrize("name", sorted(BUILTIN_TEMPLATES))
def test_builtin_templates_strip_cleanly(name: str) -> None:
    source = BUILTIN_TEMPLATES[name]
    stripped = strip_generation_tags(source)
    assert "generation -%}" in source
    assert "generation -%}" not in stripped and "if true" not in stripped
    assert _renders(stripped) == _renders(source)


@pytest.mark.parametrize("name", sorted(TRICKY))
def test_tricky_whitespace_renders_the_same(name: str) -> None:
    source = TRICKY[name]
    stripped = strip_generation_tags(source)
    assert "generation %}" not in stripped
    assert _renders(stripped) == _renders(source)
    if name == "neighbour-trim":
        assert "{% if true %}" in stripped


def test_template_without_markers_is_untouched() -> None:
    source = "{% for m in messages %}{{ m.content }}{% endfor %}"
    assert strip_generation_tags(source) is source
