"""Cell description: the sample a run is performed on (examples/cells/*.yaml).

Areal and specific quantities in protocols are resolved against `area_cm2` and
`alloy_mass_mg`, so a protocol written per cm² or per gram runs unchanged on any cell.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Anode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    material: Literal["Na", "NaK"]
    k_wt_pct: float | None = Field(default=None, gt=0, lt=100, description="K content of NaK, wt%")
    alloy_mass_mg: float | None = Field(default=None, gt=0, description="NaK alloy mass, mg")
    support: str | None = Field(default=None, description="e.g. carbon cloth")

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

    id: str = Field(min_length=1)
    anode: Anode
    counter_electrode: Literal["Na", "NaK"] = "Na"
    counter_k_wt_pct: float | None = Field(default=None, gt=0, lt=100)
    electrolyte: str = "NASICON"
    coating: str | None = None
    area_cm2: float | None = Field(default=None, gt=0)
    diameter_mm: float | None = Field(default=None, gt=0)
    temperature_C: float = Field(default=25.0, ge=-40, le=200)
    stack_pressure_MPa: float | None = Field(default=None, ge=0, le=50)
    notes: str | None = None

    @model_validator(mode="after")
    def _one_size(self) -> CellSpec:
        if (self.area_cm2 is None) == (self.diameter_mm is None):
            raise ValueError("give exactly one of area_cm2 or diameter_mm")
        if self.counter_electrode == "NaK" and self.counter_k_wt_pct is None:
            raise ValueError("a NaK counter electrode needs counter_k_wt_pct")
        return self

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
