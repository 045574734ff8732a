"""Figures in prose that cite the result they come from, so that they can be checked and updated.

A figure in the README's prose is followed, without a space, by an HTML comment (invisible once
rendered) naming the result value it states: ``<!--fig POINTER [SCALE] SPEC-->``. ``POINTER``
is the benchmark's name, then keys down its JSON result, ``/``-separated (``~1`` for a ``/``
inside a key); a list is entered by index or by ``key=value`` (its first element whose ``key``
is ``value``). ``SCALE`` (optional) multiplies (``*100``) or divides (``/60``); ``SPEC`` is a
Python format spec (``.1%``, ``,d``, ``.2f``; ``s`` for a string). A ratio may carry an ``x``
after its number, and the figure may close a ``**bold**`` before the comment::

    >>> results = {"accuracy": {"validation": {"accuracy": 0.9154}, "train_seconds": 3370.5},
    ...            "train_speed": {"lengths": [{"max_length": 512, "ratio": 2.347}]}}
    >>> text = ("**91.5%**<!--fig accuracy/validation/accuracy .1%--> in "
    ...         "56<!--fig accuracy/train_seconds /60 .0f--> min, "
    ...         "2.34x<!--fig train_speed/lengths/max_length=512/ratio .2f-->")
    >>> for problem in check_figures(text, results, "README.md"):
    ...     print(problem.message)  # doctest: +ELLIPSIS
    README.md:1: 2.34x should be 2.35x, as train_speed/lengths/max_length=512/ratio holds: ...
    >>> update_figures(text, results).split(", ")[-1]
    '2.35x<!--fig train_speed/lengths/max_length=512/ratio .2f-->'

Between ``<!-- figures:start -->`` and ``<!-- figures:end -->`` every figure must cite its result:
a number with a decimal point, a thousands separator, a ``%``, an ``x`` or a unit (ms, s, min,
MiB, GFLOP/s, ...) that cites none is a problem. Bare small integers (``12-layer``, ``2 cores``)
and code spans are not figures.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

REGION_START = "<!-- figures:start -->"
REGION_END = "<!-- figures:end -->"
CITED = re.compile(
    r"(?P<figure>[-+]?\d[\d.,]*%?)(?P<unit>x?)(?P<bold>\*\*)?<!--fig (?P<ref>[^>]*?)-->")
_SCALE = re.compile(r"^[*/][0-9.]+(e[+-]?\d+)?$")
_UNITS = r"%|x\b|\s?(?:ms|s|min|h|MiB|MB|GB|KB|GFLOP/s|req/s|requests/s|examples/s|reviews/s)\b"
UNCITED = re.compile(rf"(?<![\w.])(\d{{1,3}}(?:,\d{{3}})+(?:\.\d+)?|\d+\.\d+|\d+)({_UNITS})?")
_CODE = re.compile(r"`[^`\n]*`")


@dataclass(frozen=True)
class Problem:
    """One line of ``python -m benchmarks.report --check``."""

    message: str


class Unresolved(LookupError):
    """The pointer names nothing in the results."""


def resolve(pointer: str, results: dict[str, Any]) -> Any:
    """The value ``pointer`` names in ``results`` ({benchmark name: its JSON result})."""
    value: Any = results
    for raw in pointer.split("/"):
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        elif isinstance(value, list) and "=" in key:
            field, wanted = key.split("=", 1)
            value = next((item for item in value if isinstance(item, dict)
                          and str(item.get(field)) == wanted), None)
            if value is None:
                raise Unresolved(pointer)
        else:
            raise Unresolved(pointer)
    return value


def split_ref(ref: str) -> tuple[str, str | None, str]:
    """``POINTER [SCALE] SPEC`` -> (pointer, scale or None, spec); the pointer may hold spaces."""
    parts = ref.strip().split(" ")
    spec = parts.pop()
    scale = parts.pop() if len(parts) > 1 and _SCALE.match(parts[-1]) else None
    return " ".join(parts), scale, spec


def render(ref: str, results: dict[str, Any]) -> str:
    """The figure ``ref`` (``POINTER [SCALE] SPEC``) cites, formatted as the prose shows it."""
    pointer, scale, spec = split_ref(ref)
    value = resolve(pointer, results)
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unresolved(ref)
    if scale:
        factor = float(scale[1:])
        value = value * factor if scale[0] == "*" else value / factor
    if spec.endswith("d") and float(value).is_integer():
        value = int(value)
    try:
        return format(value, spec)
    except ValueError as err:
        raise Unresolved(f"{ref} ({err})") from None


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _regions(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) offsets of the checked regions."""
    position = 0
    while (start := text.find(REGION_START, position)) != -1:
        end = text.find(REGION_END, start)
        end = len(text) if end == -1 else end
        yield start + len(REGION_START), end
        position = end


def check_figures(text: str, results: dict[str, Any], name: str) -> list[Problem]:
    """Cited figures that differ from their result or cite none; figures in checked regions
    that cite nothing."""
    problems = []
    for match in CITED.finditer(text):
        where = f"{name}:{_line(text, match.start())}"
        shown = match["figure"] + match["unit"]
        try:
            expected = render(match["ref"], results) + match["unit"]
        except Unresolved as err:
            problems.append(Problem(f"{where}: {shown} cites {err}, which no result holds: "
                                    "measure it or remove the figure"))
            continue
        if shown != expected:
            problems.append(Problem(f"{where}: {shown} should be {expected}, as "
                                    f"{split_ref(match['ref'])[0]} holds: run "
                                    "python -m benchmarks.report --write"))
    for start, end in _regions(text):
        region = CITED.sub(lambda m: " " * len(m[0]), text[start:end])
        region = _CODE.sub(lambda m: " " * len(m[0]), region)
        for match in UNCITED.finditer(region):
            number, unit = match[1], match[2] or ""
            if not (unit or "." in number or "," in number):
                continue
            problems.append(Problem(
                f"{name}:{_line(text, start + match.start())}: {number}{unit} cites no result: "
                "follow it with <!--fig BENCHMARK/KEY/... SPEC--> or remove it"))
    return problems


def update_figures(text: str, results: dict[str, Any]) -> str:
    """``text`` with every cited figure that resolves set to its result's value."""
    def replace(match: re.Match) -> str:
        try:
            figure = render(match["ref"], results)
        except Unresolved:
            return match[0]
        return f"{figure}{match['unit']}{match['bold'] or ''}<!--fig {match['ref']}-->"

    return CITED.sub(replace, text)
