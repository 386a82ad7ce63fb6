"""Label selectors as the API server reads ``?labelSelector=``: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``,
``a notin (x)``, ``a`` and ``!a``, joined by commas."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from tests.helpers.kube_api.status import bad_request

Requirement = Callable[[Mapping[str, str]], bool]

_SET = re.compile(r"\s*([^\s!=,()]+)\s+(in|notin)\s*\(([^)]*)\)\s*")
_EQUALITY = re.compile(r"\s*([^\s!=,()]+)\s*(==|=|!=)\s*([^\s!=,()]*)\s*")
_EXISTS = re.compile(r"\s*(!?)\s*([^\s!=,()]+)\s*")


class LabelSelector:
    """A parsed selector; ``LabelSelector("")`` selects everything."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._requirements = [_requirement(part) for part in _split(text)]

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        return all(requirement(labels or {}) for requirement in self._requirements)


def _split(text: str) -> list[str]:
    """Split on the commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [part for part in [*parts, current] if part.strip()]


def _requirement(part: str) -> Requirement:
    if match := _SET.fullmatch(part):
        key, operator, values = match.group(1), match.group(2), {v.strip() for v in match.group(3).split(",")}
        if operator == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _EQUALITY.fullmatch(part):
        key, operator, value = match.groups()
        if operator == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _EXISTS.fullmatch(part):
        negated, key = match.group(1) == "!", match.group(2)
        return lambda labels: (key in labels) != negated
    raise bad_request(f"unable to parse requirement: {part!r}")
