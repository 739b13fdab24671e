"""The wire format between labctl and a simulated bench in its own process: JSON lines.

Only the EClib boundary's own records cross it (`labctl_drivers.biologic.eclib`: DeviceInfo,
ChannelInfo, CurrentValues, DataInfo, DataBuffer, EccParam) plus numbers, strings and lists, so
nothing is unpickled: a peer can at worst send a malformed request, which is refused. Data
words travel base64-encoded, little-endian uint32, as the DLL lays them out.

Request:  {"id": n, "target": "sim-SP300-1", "call": "get_data", "args": [...]}
Reply:    {"id": n, "ok": <value>}  or  {"id": n, "error": {"code": -200, "function": "..."}}
          or {"id": n, "error": {"message": "..."}} for a fault that is not a DLL code.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import numpy as np

from labctl_drivers.biologic.eclib import (
    ChannelInfo,
    CurrentValues,
    DataBuffer,
    DataInfo,
    DeviceInfo,
    EccParam,
    ParamType,
)

#: The longest line either side accepts (a DataBuffer is ~6 kB; this bounds a bad peer).
MAX_LINE_BYTES = 1 << 20

_RECORDS: dict[str, type] = {cls.__name__: cls for cls in (
    ChannelInfo, CurrentValues, DataInfo, DeviceInfo, EccParam)}


class WireError(ValueError):
    """A message that does not follow the wire format."""


def encode(value: Any) -> Any:
    """A JSON-able form of an EClib value."""
    if isinstance(value, DataBuffer):
        words = np.ascontiguousarray(value.words, dtype="<u4")
        return {"$": "DataBuffer", "words": base64.b64encode(words.tobytes()).decode("ascii"),
                "info": encode(value.info), "values": encode(value.values)}
    if isinstance(value, ParamType):
        return {"$": "ParamType", "v": int(value)}
    if dataclasses.is_dataclass(value) and type(value).__name__ in _RECORDS:
        return {"$": type(value).__name__,
                **{f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise WireError(f"cannot send a {type(value).__name__}")


def decode(value: Any) -> Any:
    """The EClib value a JSON form stands for; WireError for anything else."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        kind = value.get("$")
        if kind == "DataBuffer":
            raw = base64.b64decode(value["words"], validate=True)
            if len(raw) % 4:
                raise WireError("data words are not a whole number of 32-bit words")
            words = np.frombuffer(raw, dtype="<u4").astype(np.uint32, copy=False)
            return DataBuffer(words, decode(value["info"]), decode(value["values"]))
        if kind == "ParamType":
            return ParamType(int(value["v"]))
        cls = _RECORDS.get(str(kind))
        if cls is None:
            raise WireError(f"unknown record {kind!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {k: decode(v) for k, v in value.items() if k != "$"}
        if not set(fields) <= names:
            raise WireError(f"unknown fields for {kind}: {sorted(set(fields) - names)}")
        return cls(**fields)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise WireError(f"unexpected JSON value {type(value).__name__}")


def dumps(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), allow_nan=True).encode("utf-8") + b"\n"


def loads(line: bytes) -> dict[str, Any]:
    if len(line) > MAX_LINE_BYTES:
        raise WireError("message too long")
    try:
        msg = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"not a JSON message: {exc}") from None
    if not isinstance(msg, dict):
        raise WireError("a message must be a JSON object")
    return msg
