"""Located errors: every complaint about a protocol points at FILE:LINE:COL.

Operators fix protocols in an editor, so an error is only useful if it names the exact line of
the offending key or value. All errors in a file are collected and reported together, because a
fix-one-rerun-see-the-next loop at the bench wastes cell time (NaK cells degrade while waiting).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PathElem = str | int


@dataclass(frozen=True)
class LocatedError:
    """One problem in one file. `line` and `col` are 1-based; `path` is the key path in the YAML."""

    file: str
    line: int
    col: int
    path: tuple[PathElem, ...]
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"

    @property
    def dotted_path(self) -> str:
        """'steps[2].current' — handy for UIs that show the key path next to the message."""
        out = ""
        for p in self.path:
            out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
        return out


class ProtocolError(Exception):
    """Raised when a protocol or cell file is refused; carries every error found, in file order."""

    def __init__(self, errors: Sequence[LocatedError]) -> None:
        self.errors: list[LocatedError] = sorted(errors, key=lambda e: (e.file, e.line, e.col))
        super().__init__("\n".join(str(e) for e in self.errors))


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """ "; did you mean 'current'?" or '' — a misspelt key is the commonest protocol typo."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{matches[0]}'?" if matches else ""
