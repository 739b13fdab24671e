"""Cell description: the sample a run is performed on (examples/cells/*.yaml).

Areal and specific quantities in protocols are resolved against `area_cm2` and
`alloy_mass_mg`, so a protocol written per cm² or per gram runs unchanged on any cell.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

# Numbers are strict (a YAML `true` is not an area) and finite; bounds are physical: a
# laboratory electrode is between a tenth of a millimetre and twenty centimetres across, so a
# typo such as 1e-200 or 1e300 is refused here instead of dividing by ~0 later. Texts fit the
# database's String(200) columns.
_TEXT = 200


def _measure(lo: float, hi: float, description: str | None = None) -> Any:
    return Field(default=None, strict=True, allow_inf_nan=False, ge=lo, le=hi,
                 description=description)


class Anode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    material: Literal["Na", "NaK"]
    k_wt_pct: float | None = Field(default=None, strict=True, allow_inf_nan=False, gt=0, lt=100,
                                   description="K content of NaK, wt%")
    alloy_mass_mg: float | None = _measure(1e-3, 1e5, "NaK alloy mass, mg")
    support: str | None = Field(default=None, max_length=_TEXT, description="e.g. carbon cloth")

    @model_validator(mode="after")
    def _nak_needs_composition(self) -> Anode:
        if self.material == "NaK" and (self.k_wt_pct is None or self.alloy_mass_mg is None):
            raise ValueError("a NaK anode needs k_wt_pct and alloy_mass_mg")
        if self.material == "Na" and self.k_wt_pct is not None:
            raise ValueError("a Na anode has no k_wt_pct (use material: NaK)")
        return self


class CellSpec(BaseModel):
    """One physical cell. Give `area_cm2` or `diameter_mm` (the electrode's), not both."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=_TEXT)
    anode: Anode
    counter_electrode: Literal["Na", "NaK"] = "Na"
    counter_k_wt_pct: float | None = Field(default=None, strict=True, allow_inf_nan=False, gt=0,
                                           lt=100)
    electrolyte: str = Field(default="NASICON", max_length=_TEXT)
    coating: str | None = Field(default=None, max_length=_TEXT)
    area_cm2: float | None = _measure(1e-4, 400.0)
    diameter_mm: float | None = _measure(0.1, 200.0)
    temperature_C: float = Field(default=25.0, strict=True, allow_inf_nan=False, ge=-40, le=200)
    stack_pressure_MPa: float | None = Field(default=None, strict=True, allow_inf_nan=False,
                                             ge=0, le=50)
    notes: str | None = Field(default=None, max_length=20_000)
    # where the description came from (set by load_cell), so checks that need both the
    # protocol and the cell can point at the cell file's own line
    _source: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_size(self) -> CellSpec:
        if (self.area_cm2 is None) == (self.diameter_mm is None):
            raise ValueError("give exactly one of area_cm2 or diameter_mm")
        if self.counter_electrode == "NaK" and self.counter_k_wt_pct is None:
            raise ValueError("a NaK counter electrode needs counter_k_wt_pct")
        return self

    @property
    def symmetric(self) -> bool:
        """The same metal (and NaK composition) on both electrodes."""
        return (self.anode.material == self.counter_electrode
                and (self.anode.material == "Na" or self.anode.k_wt_pct == self.counter_k_wt_pct))

    @property
    def area(self) -> float:
        """Electrode area in cm²."""
        if self.area_cm2 is not None:
            return self.area_cm2
        assert self.diameter_mm is not None
        return math.pi * (self.diameter_mm / 20.0) ** 2

    def as_record(self) -> dict[str, Any]:
        """What the recorder stores for this cell: the description as JSON, plus the resolved
        area (`area_cm2_resolved`) it computes current densities with."""
        record = self.model_dump(mode="json")
        record["area_cm2_resolved"] = self.area
        return record

    @property
    def alloy_mass_g(self) -> float | None:
        mg = self.anode.alloy_mass_mg
        return None if mg is None else mg / 1000.0
