"""Clear errors for optional dependencies that are not installed."""

from __future__ import annotations

import importlib.util

from bedrock_ft.errors import BedrockFTError

__all__ = ["MissingDependencyError", "require"]


class MissingDependencyError(BedrockFTError, ImportError):
    """A feature needs an optional extra that is not installed."""


def require(*modules: str, extra: str, feature: str) -> None:
    """Raise :class:`MissingDependencyError` naming the extra to install if any module is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependencyError(
            f"{feature} needs {', '.join(missing)}; install it with: pip install 'bedrock-ft[{extra}]'"
        )
