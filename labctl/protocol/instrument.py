"""What the potentiostat a protocol runs on can do, as a typed description the protocol layer
checks against without importing any driver.

The schema refuses anything beyond the SP-300's ranges (BioLogic SP-300 specifications:
±10 V control, ±500 mA on the standard board, EIS 10 µHz – 7 MHz) for every value, because that
is the instrument labctl ships for. A station may use a smaller instrument or board; its file
then says so (`ranges:` on a potentiostat entry, see labctl.stations.schema) and `check_ranges`
refuses, located, what that station cannot do. Current densities are checked once the cell's
area makes them currents (in resolve).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from labctl.protocol.errors import LocatedError, PathElem
from labctl.protocol.schema import E_ABS_MAX_V, F_MAX_HZ, F_MIN_HZ, I_ABS_MAX_MA
from labctl.protocol.units import Kind, Qty

if TYPE_CHECKING:
    from labctl.protocol.loader import ExpandedStep, ProtocolDocument


@dataclass(frozen=True)
class InstrumentRanges:
    """Bounds of one potentiostat (or the narrowest of a station's)."""

    name: str
    E_abs_max_V: float
    I_abs_max_mA: float
    f_min_Hz: float
    f_max_Hz: float

    def narrowest(self, other: InstrumentRanges) -> InstrumentRanges:
        """What both instruments can do (a protocol may land on either)."""
        return InstrumentRanges(
            self.name if self.name == other.name else f"{self.name} and {other.name}",
            min(self.E_abs_max_V, other.E_abs_max_V), min(self.I_abs_max_mA, other.I_abs_max_mA),
            max(self.f_min_Hz, other.f_min_Hz), min(self.f_max_Hz, other.f_max_Hz))

    def problem(self, q: Qty) -> str | None:
        """Why `q` is beyond these ranges, or None."""
        if q.kind is Kind.VOLTAGE and abs(q.value) > self.E_abs_max_V:
            return f"'{q}' is outside the {self.name} range of ±{self.E_abs_max_V:g} V"
        if q.kind is Kind.CURRENT and abs(q.value) > self.I_abs_max_mA:
            return f"'{q}' exceeds the {self.name} range of ±{self.I_abs_max_mA:g} mA"
        if q.kind is Kind.FREQUENCY and not self.f_min_Hz <= q.value <= self.f_max_Hz:
            return (f"'{q}' is outside the {self.name} EIS range "
                    f"{self.f_min_Hz:g} Hz – {self.f_max_Hz:g} Hz")
        return None


SP300 = InstrumentRanges("SP-300", E_ABS_MAX_V, I_ABS_MAX_MA, F_MIN_HZ, F_MAX_HZ)


def _quantities(obj: Any, path: tuple[PathElem, ...]) -> Iterator[tuple[tuple[PathElem, ...], Qty]]:
    if isinstance(obj, Qty):
        yield path, obj
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _quantities(getattr(obj, name), (*path, name))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _quantities(v, (*path, i))


def check_ranges(doc: ProtocolDocument, expanded: list[ExpandedStep],
                 ranges: InstrumentRanges) -> list[LocatedError]:
    """Every voltage, current and frequency of the protocol against `ranges`, located."""
    if ranges == SP300:
        return []  # the schema already checked every value against these
    errors: list[LocatedError] = []
    found = [(("limits",), doc.spec.limits)] + [(ex.path, ex.spec) for ex in expanded]
    for base, obj in found:
        for path, q in _quantities(obj, base):
            message = ranges.problem(q)
            if message:
                e = doc.source.error(path, message)
                if e not in errors:
                    errors.append(e)
    return errors
