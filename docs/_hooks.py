"""mkdocs hook: the config reference is generated from the pydantic models when the docs are built."""

from __future__ import annotations

from typing import Any

MARKER = "<!-- config-reference -->"


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if MARKER not in markdown:
        return markdown
    from bedrock_ft.config import config_reference
    from bedrock_ft.pipeline import PipelineConfig

    return markdown.replace(MARKER, config_reference(PipelineConfig))
