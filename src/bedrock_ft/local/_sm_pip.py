"""``pip`` inside a local training job: the current environment stands in for the image.

``pip install -r requirements.txt`` (what the sagemaker SDK's driver runs) checks each requirement
against what is installed here and reports it, instead of installing anything. A requirement this
environment doesn't satisfy is a warning, not an error: the image's stack (CUDA torch, say) is not
this machine's. Other pip commands are refused, so a job can't change the environment it runs in.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path


def check(path: Path) -> list[str]:
    from packaging.requirements import InvalidRequirement, Requirement

    lines = []
    for number, raw in enumerate(path.read_text("utf-8").splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-") or line.endswith(".whl") or ".whl[" in line or "/" in line:
            lines.append(f"  {line}: not checked (a pip option or a local file)")
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            raise SystemExit(f"ERROR: {path}:{number}: invalid requirement {line!r}: {exc}") from None
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            lines.append(f"  WARNING {requirement}: not installed in this environment")
            continue
        ok = requirement.specifier.contains(version, prereleases=True)
        lines.append(f"  {requirement}: {version}" + ("" if ok else " (WARNING: does not satisfy it)"))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "install":
        print("local SageMaker: only `pip install` is served inside a job", file=sys.stderr)
        return 1
    files = [Path(args[i + 1]) for i, a in enumerate(args[:-1]) if a in ("-r", "--requirement")]
    print("local SageMaker: this Python environment stands in for the image; checking, not installing:")
    for path in files:
        print(f"{path}:")
        for line in check(path):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
