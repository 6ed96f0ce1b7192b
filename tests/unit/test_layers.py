"""The dependency rule of docs/architecture.md, checked on the source (every import, function-level ones
included; ``if TYPE_CHECKING:`` imports are annotations, not dependencies, and are left out).

1. The units of the package (top-level modules and subpackages) are in one order, the foundation first
   and the stages in pipeline order: a unit imports only units before it. So there is no cycle.
2. A subpackage's private modules (``_x.py``) are its own: no other unit imports them. Top-level private
   modules (``bedrock_ft._io``...) are the library's shared internals.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "bedrock_ft"

ORDER = [
    # shared internals and the foundation
    "_version", "_patterns", "errors", "_io", "_deps", "_system", "_findings", "_safetensors",
    "_config_errors", "config",
    "formats", "progress", "_shapes", "aws", "chat_templates", "architectures", "artifacts", "preflight",
    "models", "_base_model",
    # the stages, in pipeline order
    "data", "training", "merging", "importing", "runtime", "evaluation",
    # the local Bedrock (serves the Bedrock API: it imports no stage), then what wires everything
    "local", "pipeline", "_quickstart", "cli", "bedrock", "bedrock_ft",
]  # fmt: skip


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "bedrock_ft"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports() -> list[tuple[str, str, int]]:
    """(importing module, imported module, line) for every bedrock_ft import that runs."""
    found: list[tuple[str, str, int]] = []
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base])
                # `from pkg import mod` imports pkg.mod when mod is a module
                targets = [base]
                for alias in node.names:
                    sub = SRC.parent / Path(*f"{base}.{alias.name}".split("."))
                    if sub.with_suffix(".py").is_file() or (sub / "__init__.py").is_file():
                        targets.append(f"{base}.{alias.name}")
            found += [(module, t.strip("."), node.lineno) for t in targets if t.startswith("bedrock_ft")]
    return found


def test_every_unit_is_placed() -> None:
    units = {_unit(_module_name(p)) for p in SRC.rglob("*.py")}
    assert units == set(ORDER), (
        f"place these in ORDER: {sorted(units - set(ORDER))}; gone: {set(ORDER) - units}"
    )


def _order_violations(order: list[str]) -> list[str]:
    rank = {unit: i for i, unit in enumerate(order)}
    return [
        f"{src}:{line} imports {dst} ({_unit(src)} must not depend on {_unit(dst)})"
        for src, dst, line in _imports()
        if _unit(src) != _unit(dst) and rank[_unit(dst)] > rank[_unit(src)]
    ]


def test_units_import_only_units_before_them() -> None:
    wrong = _order_violations(ORDER)
    assert not wrong, "\n".join(wrong)


def test_private_modules_of_a_subpackage_stay_inside_it() -> None:
    wrong = []
    for src, dst, line in _imports():
        parts = dst.split(".")
        private = [p for p in parts[2:] if p.startswith("_")]
        if len(parts) > 2 and private and _unit(src) != _unit(dst):
            wrong.append(f"{src}:{line} imports {dst}, private to bedrock_ft.{parts[1]}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_function_level_imports() -> None:
    """The rule is only as good as the import finder: ImportedModelClient.from_arn imports the importing
    package inside a function, and swapping the two stages must be caught."""
    imports = _imports()
    assert any(
        src == "bedrock_ft.runtime._client" and dst == "bedrock_ft.importing" for src, dst, _ in imports
    )
    swapped = [u for u in ORDER if u != "runtime"]
    swapped.insert(swapped.index("importing"), "runtime")
    assert any("bedrock_ft.runtime._client" in line for line in _order_violations(swapped))
