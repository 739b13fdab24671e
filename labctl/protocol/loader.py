"""Load protocol and cell files into validated models, turning every problem into a LocatedError.

Pydantic reports errors as key paths; the YAML source maps those paths back to lines, so the
operator sees ``protocols/ccd.yaml:14:7: unknown key 'curent' in galvanostatic step; did you mean
'current'?`` instead of a pydantic traceback.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from labctl.protocol import semantics
from labctl.protocol.bounded import read_bounded
from labctl.protocol.cell import CellSpec
from labctl.protocol.errors import LocatedError, PathElem, ProtocolError, did_you_mean
from labctl.protocol.schema import (
    SCHEMA_VERSION,
    STEP_MODELS,
    ProtocolSpec,
    RepeatSpec,
    StepSpec,
    dump_set,
    iter_refs,
    model_for,
    split_model_message,
    substitute,
)
from labctl.protocol.units import Qty
from labctl.protocol.yaml_source import YamlSource, YamlSyntax, load_yaml, to_plain


@dataclass(frozen=True)
class ProtocolDocument:
    """A validated protocol file, with what is needed to prove later exactly what ran."""

    path: str
    text: str
    sha256: str
    schema_version: int
    spec: ProtocolSpec
    source: YamlSource

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class ExpandedStep:
    """One concrete (placeholder-free) step from the document, with where it came from."""

    spec: StepSpec
    path: tuple[PathElem, ...]
    iteration: tuple[tuple[int, int], ...]  # (i, n) per enclosing repeat, outermost first
    env: dict[str, Qty]


def _strip_tags(loc: tuple[Any, ...]) -> tuple[PathElem, ...]:
    """Pydantic puts union tags ('galvanostatic') and validator names into paths; drop them."""
    out: list[PathElem] = []
    for i, elem in enumerate(loc):
        if isinstance(elem, str) and elem in STEP_MODELS and i > 0 and isinstance(loc[i - 1], int):
            continue
        if isinstance(elem, str) and ("function-" in elem or elem.startswith("[")):
            continue
        out.append(elem)
    return tuple(out)


def _what(model: type[BaseModel] | None) -> str:
    if model is None:
        return "here"
    name = model.__name__.removesuffix("Spec")
    kind = next((k for k, m in STEP_MODELS.items() if m is model), None)
    if kind is not None:
        return f"in {kind} step"
    if model is ProtocolSpec:
        return "at top level"
    if model is CellSpec:
        return "in cell"
    return f"in {name.lower()}"


def errors_from_pydantic(
    exc: ValidationError,
    src: YamlSource,
    prefix: tuple[PathElem, ...] = (),
    root: type[BaseModel] = ProtocolSpec,
    suffix: str = "",
) -> list[LocatedError]:
    """Translate pydantic errors into located, operator-readable ones."""
    out: list[LocatedError] = []
    for err in exc.errors(include_url=False):
        raw_loc = tuple(err["loc"])
        loc = prefix + _strip_tags(raw_loc)
        etype = err["type"]
        msg = str(err["msg"])
        if etype == "extra_forbidden":
            key = str(loc[-1])
            owner = model_for(prefix + raw_loc) if root is ProtocolSpec else _cell_model(raw_loc)
            fields = list(owner.model_fields) if owner is not None else []
            hint = did_you_mean(key, fields)
            out.append(src.error(loc, f"unknown key '{key}' {_what(owner)}{hint}", key=True))
        elif etype == "missing":
            owner = model_for(prefix + raw_loc) if root is ProtocolSpec else _cell_model(raw_loc)
            out.append(src.error(loc, f"missing required key '{loc[-1]}' {_what(owner)}"))
        elif etype == "union_tag_invalid":
            ctx = err.get("ctx", {})
            tag = str(ctx.get("tag", ""))
            hint = did_you_mean(tag, STEP_MODELS)
            out.append(
                src.error(
                    (*loc, "kind"),
                    f"unknown step kind '{tag}'{hint} (known: {', '.join(STEP_MODELS)})",
                )
            )
        elif etype == "union_tag_not_found":
            out.append(src.error(loc, f"step has no 'kind' (one of: {', '.join(STEP_MODELS)})"))
        elif etype == "literal_error" and loc and loc[-1] == "schema_version":
            out.append(
                src.error(
                    loc,
                    f"unsupported schema_version {err.get('input')!r}; this labctl reads "
                    f"schema_version {SCHEMA_VERSION}",
                )
            )
        elif etype == "value_error":
            for field, text in split_model_message(msg):
                where = (*loc, field) if field else loc
                key = where[-1] if where else ""
                label = f"{key}: " if isinstance(key, str) and key and not field else ""
                out.append(src.error(where, label + text + suffix))
        else:
            key = loc[-1] if loc else ""
            label = f"'{key}': " if isinstance(key, str) and key else ""
            out.append(src.error(loc, f"{label}{msg}{suffix}"))
    return out


def _cell_model(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    from labctl.protocol.cell import Anode

    return Anode if loc and loc[0] == "anode" and len(loc) > 1 else CellSpec


def read_text_file(path: str | Path) -> tuple[str, str]:
    """(file name, UTF-8 text) of a protocol, cell, campaign or station file: a regular file,
    size-capped (see `labctl.protocol.bounded`); located errors."""
    return read_bounded(path)


def _parse(file: str, text: str) -> YamlSource:
    try:
        src = load_yaml(file, text)
    except YamlSyntax as exc:
        raise ProtocolError([exc.error]) from None
    if not isinstance(src.data, dict):
        raise ProtocolError(
            [LocatedError(file, 1, 1, (), "expected a YAML mapping at the top level")]
        )
    return src


def parse_protocol_text(file: str, text: str) -> ProtocolDocument:
    """Validate protocol text (already read) — the single place all protocol checks are run."""
    src = _parse(file, text)
    try:
        spec = ProtocolSpec.model_validate(to_plain(src.data))
    except ValidationError as exc:
        raise ProtocolError(errors_from_pydantic(exc, src)) from None
    doc = ProtocolDocument(
        path=file,
        text=text,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        schema_version=spec.schema_version,
        spec=spec,
        source=src,
    )
    errors = semantics.expansion_errors(doc)  # before expanding: nested repeats multiply
    if errors:
        raise ProtocolError(errors)
    expanded = expand(doc, errors)
    errors += semantics.limit_errors(doc, expanded)
    if errors:
        raise ProtocolError(errors)
    return doc


def expand(doc: ProtocolDocument, errors: list[LocatedError]) -> list[ExpandedStep]:
    """Flatten repeats and fill ``${name}`` placeholders, re-validating each filled step.

    Errors (undefined or unused placeholders, a vary value of the wrong kind for the field it
    fills) are appended to `errors`, located at the placeholder.
    """
    out: list[ExpandedStep] = []
    _expand_list(doc, list(doc.spec.steps), ("steps",), (), {}, {}, out, errors)
    return out


def _expand_list(
    doc: ProtocolDocument,
    steps: list[Any],
    path: tuple[PathElem, ...],
    iteration: tuple[tuple[int, int], ...],
    env: dict[str, Qty],
    env_paths: dict[str, tuple[PathElem, ...]],
    out: list[ExpandedStep],
    errors: list[LocatedError],
) -> None:
    src = doc.source
    for i, step in enumerate(steps):
        spath = (*path, i)
        if isinstance(step, RepeatSpec):
            names = set(step.vary or {})
            if step.vary:
                used = {ref.name for _, ref in iter_refs(step.steps, ())}
                for name in names - used:
                    errors.append(
                        src.error(
                            (*spath, "vary", name),
                            f"vary '{name}' is not used by any "
                            f"step in this repeat (write ${{{name}}} where it applies)",
                            key=True,
                        )
                    )
            n = step.iterations
            for k in range(n):
                inner_env = dict(env)
                inner_paths = dict(env_paths)
                for name, values in (step.vary or {}).items():
                    v = values[k]
                    if isinstance(v, Qty):
                        inner_env[name] = v
                        inner_paths[name] = (*spath, "vary", name, k)
                _expand_list(
                    doc,
                    list(step.steps),
                    (*spath, "steps"),
                    (*iteration, (k, n)),
                    inner_env,
                    inner_paths,
                    out,
                    errors,
                )
                if errors and k == 0 and not step.vary:
                    break  # identical iterations: report once
            continue
        refs = list(iter_refs(step, ()))
        if not refs:
            out.append(ExpandedStep(step, spath, iteration, env))
            continue
        bad = False
        for rpath, ref in refs:
            if ref.name not in env:
                bad = True
                msg = f"placeholder '{ref}' is not defined by an enclosing repeat's vary"
                err = src.error((*spath, *rpath), msg)
                if err not in errors:
                    errors.append(err)
        if bad:
            continue
        dumped = dump_set(step)
        filled = substitute(dumped, env)
        try:
            concrete = type(step).model_validate(filled)
        except ValidationError as exc:
            vals = ", ".join(f"{r.name} = '{env[r.name]}'" for _, r in refs)
            for e in errors_from_pydantic(
                exc, src, prefix=spath, suffix=f" (with {vals} from vary)"
            ):
                if e not in errors:
                    errors.append(e)
            continue
        out.append(ExpandedStep(concrete, spath, iteration, env))


def load_protocol(path: str | Path) -> ProtocolDocument:
    """Read and validate a protocol file; raises ProtocolError with every located problem."""
    file, text = read_text_file(path)
    return parse_protocol_text(file, text)


def load_cell(path: str | Path) -> CellSpec:
    """Read a cell description (examples/cells/*.yaml); raises ProtocolError with located errors."""
    file, text = read_text_file(path)
    src = _parse(file, text)
    try:
        cell = CellSpec.model_validate(to_plain(src.data))
    except ValidationError as exc:
        raise ProtocolError(errors_from_pydantic(exc, src, root=CellSpec)) from None
    cell._source = src
    return cell
