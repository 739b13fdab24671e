"""Campaign files: several (protocol, cell) runs started together, one channel each.

An overnight bench rarely runs one protocol on every cell. A campaign file names the pairs;
paths are relative to the campaign file:

    # campaigns/overnight.yaml
    name: overnight NaK series
    runs:
      - {protocol: ../protocols/ccd.yaml, cell: ../examples/cells/na_symmetric.yaml}
      - {protocol: ../protocols/critical_stripping.yaml, cell: ../examples/cells/nak65_half.yaml}

Everything (the campaign file, every protocol, every cell) is validated before any run row is
written or any instrument touched; the runs then share one clock and run concurrently.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labctl.protocol import LocatedError, ProtocolError
from labctl.protocol.loader import read_text_file
from labctl.protocol.yaml_source import YamlSyntax, load_yaml


class CampaignRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    protocol: str = Field(min_length=1, max_length=4096)
    cell: str = Field(min_length=1, max_length=4096)


class CampaignSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    runs: list[CampaignRun] = Field(min_length=1, max_length=256)


def load_campaign(path: str | Path) -> tuple[str, list[tuple[Path, Path]]]:
    """(campaign name, [(protocol path, cell path), ...]) with paths resolved against the file.

    Problems are raised as a ProtocolError of located errors, like a protocol's.
    """
    path = Path(path)
    file, text = read_text_file(path)  # regular file, size-capped (labctl.protocol.bounded)
    try:
        data = load_yaml(file, text).data  # nesting and alias expansion capped, positions kept
    except YamlSyntax as exc:
        raise ProtocolError([exc.error]) from None
    if not isinstance(data, dict):
        raise ProtocolError([LocatedError(file, 1, 1, (), "expected a YAML mapping (a campaign)")])
    try:
        spec = CampaignSpec.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            line, col = _position(data, err["loc"])
            where = ".".join(str(p) for p in err["loc"])
            errors.append(LocatedError(str(path), line, col, tuple(err["loc"]),
                                       f"{where}: {err['msg']}"))
        raise ProtocolError(errors) from None
    base = path.parent
    missing = [
        LocatedError(str(path), *_position(data, ("runs", i, key)), ("runs", i, key),
                     f"runs[{i}].{key}: no such file {getattr(run, key)!r}")
        for i, run in enumerate(spec.runs) for key in ("protocol", "cell")
        if not (base / getattr(run, key)).is_file()
    ]
    if missing:
        raise ProtocolError(missing)
    return spec.name, [(base / r.protocol, base / r.cell) for r in spec.runs]


def _position(data: object, loc: tuple[object, ...]) -> tuple[int, int]:
    """1-based line/column of the deepest YAML node on `loc` that exists."""
    line, col = 1, 1
    node = data
    for key in loc:
        lc = getattr(node, "lc", None)
        try:
            if lc is not None:
                pos = lc.key(key) if isinstance(key, str) else lc.item(key)
                line, col = pos[0] + 1, pos[1] + 1
            node = node[key]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            break
    return line, col
