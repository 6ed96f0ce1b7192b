"""Exported chat templates lose trl's {% generation %} markers and render exactly as before."""

from __future__ import annotations

import pytest

from bedrock_ft.chat_templates import BUILTIN_TEMPLATES, ChatTemplate, strip_generation_tags

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
def test_builtin_templates_lose_the_markers_and_render_the_same(name: str) -> None:
    source = BUILTIN_TEMPLATES[name]
    stripped = strip_generation_tags(source)
    assert "{%- generation -%}" in source and "{%- endgeneration -%}" in source
    assert "generation -%}" not in stripped
    assert "{%- if true -%}" in stripped and stripped.count("endif") == source.count("endif") + 1
    assert _renders(stripped) == _renders(source)


@pytest.mark.parametrize("name", sorted(TRICKY))
def test_tricky_whitespace_renders_the_same(name: str) -> None:
    source = TRICKY[name]
    stripped = strip_generation_tags(source)
    assert "generation %}" not in stripped
    assert _renders(stripped) == _renders(source)


def test_branches_the_samples_do_not_reach_render_the_same() -> None:
    """Tool calls: whitespace inside a branch is kept exactly (the tags are swapped, never deleted)."""
    source = (
        "{% for m in messages %}{% if m.tool %}<tool>\n  {% generation %}\n{{ m.tool }}{% endgeneration %}\n"
        "  {% endif %}</tool>{% endfor %}"
    )
    render = ChatTemplate("custom", source).renderer()
    messages = [{"role": "assistant", "content": "", "tool": "T1"}]
    assert render(messages) == ChatTemplate("custom", strip_generation_tags(source)).renderer()(messages)


ADDED = [
    {"content": "<|im_start|>", "id": 1, "special": True},
    {"content": "<|im_end|>", "id": 2, "special": True},
    {"content": "<|start_header_id|>", "id": 5, "special": True},
    {"content": "<|end_header_id|>", "id": 6, "special": True},
    {"content": "<|eot_id|>", "id": 7, "special": True},
    {"content": "</s>", "id": 9, "special": True},
]


@pytest.mark.parametrize(
    ("template", "token"),
    [("chatml", ("<|im_end|>", 2)), ("llama3", ("<|eot_id|>", 7)), ("mistral", ("</s>", 9))],
)
def test_end_of_turn_token_is_what_follows_the_assistant(template: str, token: tuple[str, int]) -> None:
    from bedrock_ft.merging._export import end_of_turn_token

    config = {"eos_token": "</s>", "bos_token": {"content": "<s>", "special": True}}
    assert end_of_turn_token(BUILTIN_TEMPLATES[template], {"added_tokens": ADDED}, config) == token
    plain = "{% for m in messages %}{{ m.content }}\n{% endfor %}"
    assert end_of_turn_token(plain, {"added_tokens": ADDED}, config) is None


def test_template_without_markers_is_untouched() -> None:
    source = "{% for m in messages %}{{ m.content }}{% endfor %}"
    assert strip_generation_tags(source) is source
