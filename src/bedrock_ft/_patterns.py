"""Java regexes from botocore's models, run in linear time.

botocore's `pattern` traits are Java regexes over the whole value. They are translated (`\\p{L}`,
Java's `.`, ASCII-only `\\d\\s\\w`) and run on a small NFA: in `re`, `(-*[a-zA-Z0-9\\+\\-\\.])*`
(JobName) takes exponential time on `a---...---!`, and a 60-dash job name would hang the server.
Constructs with no Python equivalent are skipped (the value is not checked), with a warning.
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
import sys
import unicodedata
from collections.abc import Callable
from typing import Any

__all__ = ["pattern_matcher", "translate_java_pattern"]

_log = logging.getLogger("bedrock_ft.local._shapes")
_sre: Any = importlib.import_module("re._parser" if sys.version_info >= (3, 11) else "sre_parse")
_op: Any = importlib.import_module("re._constants" if sys.version_info >= (3, 11) else "sre_constants")


# --- Java patterns -----------------------------------------------------------------------------------


class _Untranslatable(Exception):
    pass


_JAVA_DOT = "[^\\n\\r\\u0085\\u2028\\u2029]"  # Java's `.` stops at every line terminator, not just \n


@functools.cache
def _unicode_categories() -> dict[str, str]:
    """Class bodies (`\\Uxxxxxxxx-\\Uyyyyyyyy...`) for every general category, "L" and "Lu" alike."""
    spans: dict[str, list[str]] = {}
    start, current = 0, unicodedata.category(chr(0))
    for cp in range(1, sys.maxunicode + 2):
        cat = unicodedata.category(chr(cp)) if cp <= sys.maxunicode else ""
        if cat != current:
            for key in (current, current[0]):
                spans.setdefault(key, []).append(f"\\U{start:08x}-\\U{cp - 1:08x}")
            start, current = cp, cat
    return {key: "".join(parts) for key, parts in spans.items()}


def translate_java_pattern(pattern: str) -> str:
    """Java regex -> Python regex of the same meaning under `re.ASCII`; raises where there is none.

    Translated: `\\p{L}`/`\\p{IsL}`/`\\p{Lu}`/`\\P{..}` (general categories only), `.`, `\\z`.
    Refused: nested classes and `&&`, `\\P` inside a class, `\\v`, `\\Z`, other property names.
    """
    out, i, in_class = [], 0, False
    while i < len(pattern):
        char, nxt = pattern[i], pattern[i + 1 : i + 2]
        if char == "\\" and nxt in ("p", "P"):
            end = pattern.find("}", i) + 1 if pattern[i + 2 : i + 3] == "{" else i + 3
            name = pattern[i + 2 : end].strip("{}")
            name = name[2:] if name.startswith("Is") else name
            if name not in _unicode_categories() or (nxt == "P" and in_class):
                raise _Untranslatable(pattern[i:end])
            body = _unicode_categories()[name]
            out.append(body if in_class else f"[{'^' if nxt == 'P' else ''}{body}]")
            i = end
        elif char == "\\":
            if nxt in ("v", "Z", ""):
                raise _Untranslatable(f"\\{nxt}")
            out.append("\\Z" if nxt == "z" else char + nxt)
            i += 2
        elif in_class and (char == "[" or pattern.startswith("&&", i)):
            raise _Untranslatable("nested class or class intersection")
        elif char == "[" and not in_class:
            head = 2 if nxt == "^" else 1
            head += pattern[i + head : i + head + 1] == "]"  # a leading "]" is literal
            in_class, i = True, i + head
            out.append(pattern[i - head : i])
        else:
            in_class = in_class and char != "]"
            out.append(_JAVA_DOT if char == "." and not in_class else char)
            i += 1
    return "".join(out)


@functools.cache
def _compile_pattern(pattern: str) -> tuple[str, Callable[[str], bool] | None]:
    """("nfa" | "re" | "skipped", matcher). `re` backtracks: it serves only what the NFA can't run."""
    try:
        python = translate_java_pattern(pattern)
        re.compile(python, re.ASCII)
    except (_Untranslatable, re.error) as exc:
        _log.warning(
            "pattern %r has no Python equivalent (%s); values are not checked against it", pattern, exc
        )
        return "skipped", None
    try:
        parsed = _sre.parse(python, re.ASCII)
        if parsed.state.flags & ~(re.ASCII | re.UNICODE):
            raise _Untranslatable("inline flags")
        program: list[list[Any]] = []
        _emit(parsed, program)
    except _Untranslatable:
        rx = re.compile(python, re.ASCII)
        return "re", lambda text: rx.fullmatch(text) is not None
    return "nfa", functools.partial(_run, [*program, ["match"]])


def pattern_matcher(pattern: str) -> Callable[[str], bool] | None:
    """A whole-value matcher for a botocore (Java) pattern; None when it has no Python equivalent."""
    return _compile_pattern(pattern)[1]


_CATEGORY = dict(zip(("DIGIT", "NOT_DIGIT", "SPACE", "NOT_SPACE", "WORD", "NOT_WORD"), "dDsSwW", strict=True))


@functools.cache
def _char_test(char_class: str) -> Callable[[str], bool]:
    rx = re.compile(char_class, re.ASCII)
    return lambda char: rx.match(char) is not None


def _class_item(op: Any, av: Any) -> str:
    if op is _op.LITERAL:
        return f"\\U{av:08x}"
    if op is _op.RANGE:
        return f"\\U{av[0]:08x}-\\U{av[1]:08x}"
    if op is _op.CATEGORY and av.name.removeprefix("CATEGORY_") in _CATEGORY:
        return "\\" + _CATEGORY[av.name.removeprefix("CATEGORY_")]
    raise _Untranslatable(op.name)


def _emit(seq: Any, prog: list[list[Any]]) -> None:
    """Thompson construction; counted repeats unroll into nested options, so few threads are alive."""
    for op, av in seq:
        if op in (_op.LITERAL, _op.NOT_LITERAL):
            prog.append(["char", _char_test(f"[{'^' if op is _op.NOT_LITERAL else ''}\\U{av:08x}]")])
        elif op is _op.ANY:
            prog.append(["char", _char_test(".")])
        elif op is _op.IN:
            negate = "^" if av and av[0][0] is _op.NEGATE else ""
            items = "".join(_class_item(o, a) for o, a in av[len(negate) :])
            prog.append(["char", _char_test(f"[{negate}{items}]")])
        elif op is _op.SUBPATTERN and not av[1] and not av[2]:
            _emit(av[3], prog)
        elif op is _op.BRANCH:
            jumps: list[list[Any]] = []
            for alternative in av[1][:-1]:
                split = ["split", len(prog) + 1, 0]
                prog.append(split)
                _emit(alternative, prog)
                jumps.append(["jmp", 0])
                prog.append(jumps[-1])
                split[2] = len(prog)
            _emit(av[1][-1], prog)
            for jump in jumps:
                jump[1] = len(prog)
        elif op in (_op.MAX_REPEAT, _op.MIN_REPEAT):
            low, high, body = av
            for _ in range(low):
                _emit(body, prog)
            splits: list[list[Any]] = []
            for _ in range(1 if high == _op.MAXREPEAT else high - low):
                splits.append(["split", len(prog) + 1, 0])
                prog.append(splits[-1])
                _emit(body, prog)
            if high == _op.MAXREPEAT:
                prog.append(["jmp", splits[0][1] - 1])  # back to the split: a loop
            for split in splits:
                split[2] = len(prog)
        elif op is _op.AT and av in (_op.AT_BEGINNING, _op.AT_BEGINNING_STRING):
            prog.append(["bol"])
        elif op is _op.AT and av in (_op.AT_END, _op.AT_END_STRING):
            prog.append(["eol"])
        else:
            raise _Untranslatable(op.name)


def _run(prog: list[list[Any]], text: str) -> bool:
    """Pike VM: all threads advance together one character at a time, O(len(text) * len(prog))."""

    def follow(states: set[int], pc: int, pos: int) -> None:
        stack = [pc]
        while stack:
            pc = stack.pop()
            if pc not in states:
                states.add(pc)
                kind = prog[pc][0]
                if kind == "jmp":
                    stack.append(prog[pc][1])
                elif kind == "split":
                    stack += [prog[pc][2], prog[pc][1]]
                elif (kind == "bol" and pos == 0) or (kind == "eol" and pos == len(text)):
                    stack.append(pc + 1)

    current: set[int] = set()
    follow(current, 0, 0)
    for pos, char in enumerate(text, 1):
        following: set[int] = set()
        for pc in current:
            if prog[pc][0] == "char" and prog[pc][1](char):
                follow(following, pc + 1, pos)
        if not following:
            return False
        current = following
    return any(prog[pc][0] == "match" for pc in current)
