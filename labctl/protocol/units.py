"""Quantity parsing and dimension classification for protocol values.

Operators write values like ``0.25 mA/cm^2`` or ``30 min``. A unit mistake (a capacity where a
current belongs, a bare ``0.25`` with no unit) is the most dangerous typo in a protocol, because a
number that silently means mA instead of mA/cm² drives ~3.5x more current through a 6 mm cell.
So every physical value must carry a unit, and each field states which *kinds* it accepts.

One `UnitRegistry` lives here; nothing else in labctl should create another, because pint
quantities from different registries cannot be combined.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum

import pint

ureg: pint.UnitRegistry = pint.UnitRegistry()
ureg.define("mAh = milliampere * hour")
ureg.define("Ah = ampere * hour")


class QuantityError(ValueError):
    """A value that is not a valid quantity, or has the wrong kind of unit."""


class Kind(Enum):
    """What a quantity measures; `canonical` is the unit the protocol layer computes in."""

    CURRENT = ("current", "mA")
    CURRENT_DENSITY = ("current density", "mA/cm^2")
    CAPACITY = ("capacity", "mAh")
    AREAL_CAPACITY = ("areal capacity", "mAh/cm^2")
    SPECIFIC_CAPACITY = ("specific capacity", "mAh/g")
    TIME = ("time", "s")
    VOLTAGE = ("voltage", "V")
    SCAN_RATE = ("scan rate", "V/s")
    FREQUENCY = ("frequency", "Hz")
    PRESSURE = ("pressure", "MPa")
    TEMPERATURE = ("temperature", "degC")

    @property
    def label(self) -> str:
        return self.value[0]

    @property
    def canonical(self) -> str:
        return self.value[1]

    @property
    def example(self) -> str:
        """The unit shown to operators in messages (readable rather than canonical)."""
        return _EXAMPLE_UNIT.get(self, self.canonical)


_EXAMPLE_UNIT: dict[Kind, str] = {
    Kind.TIME: "s, min, h",
    Kind.VOLTAGE: "V, mV",
    Kind.SCAN_RATE: "mV/s",
}

_DIMENSIONS: dict[Kind, pint.util.UnitsContainer] = {
    kind: ureg.parse_units(kind.canonical).dimensionality
    for kind in Kind
    if kind is not Kind.TEMPERATURE
}
_TEMPERATURE_DIM = ureg.parse_units("kelvin").dimensionality

_NUMBER = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Qty:
    """A parsed quantity: `value` in `kind.canonical` units; `text` as the operator wrote it."""

    value: float
    kind: Kind
    text: str

    def __neg__(self) -> Qty:
        text = self.text[1:] if self.text.startswith("-") else "-" + self.text
        return Qty(-self.value, self.kind, text)

    def __str__(self) -> str:
        return self.text


def _an(label: str) -> str:
    return ("an " if label[0] in "aeiou" else "a ") + label


def describe_kinds(kinds: tuple[Kind, ...]) -> str:
    """'a current (mA) or current density (mA/cm^2)' for error messages."""
    parts = [f"{k.label} ({k.example})" for k in kinds]
    if not parts:
        return "a quantity"
    joined = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]
    return _an(joined)


def parse_quantity(value: object, hint_unit: str = "mA") -> pint.Quantity:
    """Parse '0.25 mA/cm^2' (number, then unit) into a pint quantity.

    The number and unit are split by hand so offset units like ``25 degC`` work and so that
    expressions ('2*3 mA') are not evaluated: a protocol is data, not code. `hint_unit` is the
    unit a bare number's message suggests: one of the field's own kind.
    """
    if isinstance(value, bool) or value is None:
        raise QuantityError(f"expected a quantity with a unit, got {value!r}")
    if isinstance(value, int | float):
        raise QuantityError(
            f"bare number {value!r} has no unit; write e.g. '{value} {hint_unit}'")
    if not isinstance(value, str):
        raise QuantityError(
            f"expected a quantity such as '0.25 mA/cm^2', got {type(value).__name__}"
        )
    m = _NUMBER.match(value)
    if m is None:
        raise QuantityError(f"'{value}' does not start with a number")
    number, unit_text = m.group(1), m.group(2)
    magnitude = float(number)
    if not math.isfinite(magnitude):
        raise QuantityError(f"'{value}' is not a finite number")
    if not unit_text:
        raise QuantityError(f"'{value}' has no unit; write e.g. '{number} {hint_unit}'")
    try:
        units = ureg.parse_units(unit_text.replace("²", "^2").replace("µ", "u").replace("μ", "u"))
    except Exception as exc:  # pint raises several unrelated types for bad units
        raise QuantityError(f"unknown unit '{unit_text}' in '{value}'") from exc
    return ureg.Quantity(magnitude, units)


def classify(q: pint.Quantity) -> Kind | None:
    """The kind whose dimensionality matches `q`, or None (e.g. for 'mA*V')."""
    dim = q.dimensionality
    if dim == _TEMPERATURE_DIM:
        return Kind.TEMPERATURE
    for kind, kdim in _DIMENSIONS.items():
        if dim == kdim:
            return kind
    return None


def to_qty(value: object, *kinds: Kind) -> Qty:
    """Parse `value` and require it to be one of `kinds`; the message names both sides."""
    q = parse_quantity(value, hint_unit=kinds[0].example.split(",")[0] if kinds else "mA")
    kind = classify(q)
    text = str(value).strip()
    if kind is None or (kinds and kind not in kinds):
        got = "a quantity of unknown kind" if kind is None else _an(kind.label)
        raise QuantityError(f"expected {describe_kinds(kinds)}, got {got} '{q.units:~}' ('{text}')")
    if kind is Kind.TEMPERATURE:
        magnitude = float(q.to(ureg.degC).magnitude)
    else:
        magnitude = float(q.to(kind.canonical).magnitude)
    return Qty(magnitude, kind, text)


def format_value(value: float, unit: str) -> str:
    """Compact human text for plan rows and step names ('0.25 mA', '1.5 h')."""
    return f"{value:.4g} {unit}"


def format_duration(seconds: float) -> str:
    """'90 s', '30 min', '1.5 h': the largest unit that keeps the number readable."""
    if seconds >= 3600:
        return f"{seconds / 3600:.4g} h"
    if seconds >= 60:
        return f"{seconds / 60:.4g} min"
    return f"{seconds:.4g} s"
