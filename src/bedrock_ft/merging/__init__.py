"""AdapterMerger: merge a LoRA adapter into its full-precision base and export it for Bedrock.

``AdapterMerger(MergeConfig(...)).merge(adapter)`` returns a
:class:`~bedrock_ft.artifacts.ModelArtifact`. Importing this package imports no torch; the merge
loads it when it runs. docs/merging.md describes the modes, the export and the checks.
"""

from __future__ import annotations

from bedrock_ft.merging._config import MERGE_LAYOUT, MergeConfig
from bedrock_ft.merging._merger import AdapterMerger

__all__ = ["MERGE_LAYOUT", "AdapterMerger", "MergeConfig"]
