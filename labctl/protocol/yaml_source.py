"""YAML loading that keeps line/column for every key and value.

ruamel.yaml's round-trip loader attaches positions to mappings and sequences; plain PyYAML (and
ruamel's safe loader) discard them, which would make FILE:LINE:COL errors impossible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from labctl.protocol.bounded import check_yaml_shape
from labctl.protocol.errors import LocatedError, PathElem, ProtocolError


@dataclass
class YamlSource:
    """A parsed YAML file: the raw round-trip tree plus where it came from."""

    file: str
    text: str
    data: Any

    def locate(self, path: tuple[PathElem, ...], *, key: bool = False) -> tuple[int, int]:
        """1-based (line, col) of the value at `path` (or of its key if `key`).

        Path elements that do not exist in the tree (pydantic adds union tags and missing fields
        to its error paths) are skipped, so the result is the deepest node that does exist —
        for a missing key that is the mapping that should contain it.
        """
        node: Any = self.data
        line, col = _node_pos(node)
        for i, elem in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, CommentedMap) and isinstance(elem, str) and elem in node:
                kl, kc = node.lc.key(elem)
                vl, vc = node.lc.value(elem)
                child = node[elem]
                if last and key:
                    return kl + 1, kc + 1
                if isinstance(child, CommentedMap | CommentedSeq) and len(child) > 0:
                    line, col = _node_pos(child)
                    # a block mapping under a key: point at the key, which is what people read
                    if isinstance(child, CommentedMap) and child.lc.line != kl:
                        line, col = kl + 1, kc + 1
                else:
                    line, col = (vl + 1, vc + 1)
                node = child
            elif isinstance(node, CommentedSeq) and isinstance(elem, int) and 0 <= elem < len(node):
                il, ic = node.lc.item(elem)
                line, col = il + 1, ic + 1
                node = node[elem]
            # else: a pydantic tag or a missing key — stay on the current node
        return line, col

    def error(self, path: tuple[PathElem, ...], message: str, *, key: bool = False) -> LocatedError:
        line, col = self.locate(path, key=key)
        return LocatedError(self.file, line, col, path, message)


def _node_pos(node: Any) -> tuple[int, int]:
    if isinstance(node, CommentedMap | CommentedSeq):
        return node.lc.line + 1, node.lc.col + 1
    return 1, 1


def load_yaml(file: str, text: str) -> YamlSource:
    """Parse `text`; a syntax error or a shape beyond the caps (nesting, alias expansion, see
    `labctl.protocol.bounded`) is raised as `YamlSyntax` carrying one LocatedError."""
    try:
        check_yaml_shape(file, text)
    except ProtocolError as exc:
        raise YamlSyntax(exc.errors[0]) from None
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        data = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlSyntax(
            LocatedError(file, line, col, (), f"YAML syntax error: {problem}")
        ) from exc
    except YAMLError as exc:
        raise YamlSyntax(LocatedError(file, 1, 1, (), f"YAML syntax error: {exc}")) from exc
    return YamlSource(file, text, data)


class YamlSyntax(Exception):
    """Internal: the file is not YAML at all; carries its single located error."""

    def __init__(self, error: LocatedError) -> None:
        self.error = error
        super().__init__(str(error))


def to_plain(node: Any) -> Any:
    """Round-trip containers to plain dict/list so pydantic sees ordinary Python values."""
    if isinstance(node, CommentedMap):
        return {str(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [to_plain(v) for v in node]
    if isinstance(node, bool) or type(node).__name__ == "ScalarBoolean":
        return bool(node)
    if isinstance(node, dict):
        return {str(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    if hasattr(node, "__float__") and type(node).__name__ in ("ScalarFloat",):
        return float(node)
    if type(node).__name__ in ("ScalarInt",) or (
        isinstance(node, int) and not isinstance(node, bool)
    ):
        return int(node)
    if isinstance(node, str):
        return str(node)
    return node
