"""Developer tasks. `nox -s lint typecheck light tests` is what CI runs (see README and .ci/run)."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "typecheck", "light", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

# torch first and pinned: 2.13.0 is the CPU build this project is tested with. Installing it before
# the extras keeps pip from resolving `torch` to a multi-GB CUDA build.
TORCH = "torch==2.13.0"
CONSTRAINTS = ("-c", "constraints/ci.txt")
LINTED = ("src", "tests", "examples", "benchmarks", "docs/_hooks.py", "noxfile.py")


def _threads(session: nox.Session) -> None:
    # Two cores are the norm here; more torch threads than cores only slows things down.
    session.env.setdefault("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
    session.env.setdefault("TOKENIZERS_PARALLELISM", "false")


def _install_stack(session: nox.Session) -> None:
    session.install(*CONSTRAINTS, TORCH)
    session.install(*CONSTRAINTS, "-e", ".[all,dev]")


@nox.session
def tests(session: nox.Session) -> None:
    """Every test but the GPU ones (pass pytest arguments after --)."""
    _install_stack(session)
    _threads(session)
    # One worker per core, up to 4 (each may hold a model or two in memory); a module's tests stay together.
    workers = str(min(4, len(os.sched_getaffinity(0))))
    session.run(
        "pytest", "-m", "not gpu and not examples", "-n", workers, "--dist", "loadscope", *session.posargs
    )


@nox.session
def examples(session: nox.Session) -> None:
    """Every example script run end to end with the embedded model (minutes): before a release."""
    _install_stack(session)
    _threads(session)
    session.run("pytest", "-m", "examples", "tests/e2e/test_examples.py", *session.posargs)


@nox.session
def light(session: nox.Session) -> None:
    """The unit tests on `pip install bedrock-ft` alone: the light client must need nothing more."""
    session.install(*CONSTRAINTS, "-e", ".", "pytest", "pytest-timeout")
    session.run("pytest", "tests/unit", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, and the docs built with mkdocs --strict (a broken link fails)."""
    session.install(*CONSTRAINTS, "ruff", "mkdocs", "-e", ".")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)
    # The config reference page is generated from the pydantic models (docs/_hooks.py): the light
    # install is enough to import them.
    session.run("mkdocs", "build", "--strict", "--site-dir", f"{session.virtualenv.location}/site")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src/ (the light install is enough: heavy packages are typed as Any)."""
    session.install(*CONSTRAINTS, "-e", ".", "mypy", "types-PyYAML")
    session.run("mypy")


@nox.session
def quickstart(session: nox.Session) -> None:
    """The quickstart on the embedded default, fully offline once the wheels are cached."""
    _install_stack(session)
    _threads(session)
    session.run("bedrock-ft", "quickstart", *session.posargs)


@nox.session(python=False)
def gpu(session: nox.Session) -> None:
    """GPU tests, on a machine with CUDA and the stack already on PYTHONPATH (see docs/development.md)."""
    session.run("python", "-m", "pytest", "-m", "gpu", "tests/gpu", *session.posargs)


@nox.session(venv_backend="venv")
def lock(session: nox.Session) -> None:
    """Re-resolve the dependency set from pyproject.toml and rewrite constraints/ci.txt."""
    session.install(TORCH)
    session.install(".[all,dev]")
    frozen = session.run("python", "-m", "pip", "freeze", "--exclude-editable", silent=True)
    assert isinstance(frozen, str)
    lines = [
        "torch==2.13.0" if line.startswith("torch==2.13.0") else line
        for line in frozen.splitlines()
        if line and not line.startswith("bedrock-ft")
    ]
    header = [
        "# Exact versions CI and nox install: the set that resolves with fmeval 1.2.3.",
        "# Regenerate: python -m nox -s lock",
    ]
    with open("constraints/ci.txt", "w") as fh:  # noqa: PTH123
        fh.write("\n".join(header + lines) + "\n")
