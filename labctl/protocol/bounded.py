"""Bounded reading of operator files: nothing an operator hands labctl may hang it or exhaust
the machine before it is refused.

Every protocol, cell, campaign and station file goes through `read_bounded` (regular files
only, at most `MAX_FILE_BYTES`) and then `check_yaml_shape`, which walks the YAML *event*
stream with libyaml's C parser (PyYAML's ``CParser``: linear in the file, iterative, no
recursion) before any tree is built. It refuses, at the offending line and column:

* nesting deeper than `MAX_DEPTH` (ruamel.yaml's composer and pydantic both recurse per level);
* more than `MAX_NODES` nodes *after alias expansion* — each ``*alias`` counts the full size of
  the node its anchor names, so a "billion laughs" file is refused after reading a few lines
  instead of being expanded into gigabytes.

Only then does ruamel.yaml's round-trip loader (which keeps positions for located errors) see
the text; with the size and node caps its run time is bounded too (its scanner is slower than
linear on long runs of comments or keys, which is why the caps sit far above any hand-written
protocol — the largest shipped one is ~2 kB and ~150 nodes — yet low enough to answer in well
under a second).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

from labctl.protocol.errors import LocatedError, ProtocolError

MAX_FILE_BYTES = 256 * 1024
MAX_DEPTH = 32
MAX_NODES = 20_000

try:
    from yaml.cyaml import CParser as _CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _CParser = None


def _refuse(file: str, message: str, line: int = 1, col: int = 1) -> ProtocolError:
    return ProtocolError([LocatedError(file, line, col, (), message)])


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_bounded(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> tuple[str, str]:
    """(file name, UTF-8 text) of a regular file of at most `max_bytes`; located errors.

    The type is checked on the opened descriptor (opened non-blocking, so opening a FIFO
    cannot wait for a writer) before a byte is read; at most `max_bytes` + 1 bytes are read.
    """
    file = str(path)
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise _refuse(file, f"cannot read file: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(file, f"cannot read file: it is {_kind_of(info.st_mode)}; labctl "
                                "reads only regular files")
        if info.st_size > max_bytes:
            raise _too_big(file, info.st_size, max_bytes)
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            block = os.read(fd, min(1 << 16, max_bytes + 1 - size))
            if not block:
                break
            chunks.append(block)
            size += len(block)
        if size > max_bytes:  # grew while being read
            raise _too_big(file, size, max_bytes)
    except OSError as exc:
        raise _refuse(file, f"cannot read file: {exc.strerror}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    try:
        return file, data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _refuse(file, f"file is not UTF-8 text (byte {exc.start})", line, col) from None


def _too_big(file: str, size: int, max_bytes: int) -> ProtocolError:
    return _refuse(file, f"file is {size:,} bytes, more than the {max_bytes // 1024} kB "
                         "labctl reads from a protocol, cell, campaign or station file")


def check_yaml_shape(file: str, text: str, *, max_depth: int = MAX_DEPTH,
                     max_nodes: int = MAX_NODES) -> None:
    """Refuse deep nesting and alias expansion beyond the caps, located, before parsing.

    A syntax error found here is reported here, located (libyaml also refuses flow nesting
    beyond its own limit while scanning ahead, before the depth check could see it).
    """
    if _CParser is None:  # pragma: no cover - PyYAML is always built with libyaml here
        raise RuntimeError("PyYAML without libyaml: cannot bound YAML reading")
    parser = _CParser(text)
    # per open collection: its anchor and its size so far
    stack: list[list[object]] = []
    anchors: dict[str, int] = {}
    total = 0
    try:
        while True:
            event = parser.get_event()
            if event is None or isinstance(event, yaml.StreamEndEvent):
                return
            size = 0
            if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                if len(stack) >= max_depth:
                    m = event.start_mark
                    raise _refuse(file, f"YAML nesting deeper than {max_depth} levels",
                                  m.line + 1, m.column + 1)
                stack.append([event.anchor, 1])
                continue
            if isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                anchor, size = stack.pop()
                if anchor is not None:
                    anchors[str(anchor)] = int(size)  # type: ignore[call-overload]
            elif isinstance(event, yaml.ScalarEvent):
                size = 1
                if event.anchor is not None:
                    anchors[event.anchor] = 1
                total += 1
            elif isinstance(event, yaml.AliasEvent):
                size = anchors.get(event.anchor, 1)
                total += size
            else:
                continue
            if stack:
                stack[-1][1] = int(stack[-1][1]) + size  # type: ignore[call-overload]
            if isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                total += 1
            if total > max_nodes:
                m = event.start_mark
                what = "YAML aliases expand" if isinstance(event, yaml.AliasEvent) else \
                    "the YAML document grows"
                raise _refuse(file, f"{what} to more than {max_nodes:,} values; a protocol, "
                                    "cell, campaign or station needs far fewer",
                              m.line + 1, m.column + 1)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise _refuse(file, f"YAML syntax error: {problem}".replace("\n", " "), line, col) \
            from None
    except yaml.YAMLError as exc:
        raise _refuse(file, f"YAML syntax error: {exc}".replace("\n", " ")) from None
    finally:
        parser.dispose()
