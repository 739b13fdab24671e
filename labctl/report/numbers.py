"""Numbers with units at a sensible precision, for `labctl show` and the HTML report.

Results are stored at full float precision (0.10000000000000005 mA/cm²); people read four
significant figures, integral counts without a decimal point, and units written as units
(mA/cm², Ω·cm²), not as their ASCII spelling in the database.
"""

from __future__ import annotations

import math
import re

#: ASCII unit spellings used in the database and how they are printed.
UNIT_TEXT = {"ohm": "Ω", "ohm*cm^2": "Ω·cm²", "deg": "°", "degC": "°C", "1": "", "": ""}
_POWER = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def unit_text(unit: str | None) -> str:
    """'mA/cm^2' → 'mA/cm²', 'ohm' → 'Ω'."""
    if not unit:
        return ""
    if unit in UNIT_TEXT:
        return UNIT_TEXT[unit]
    text = unit.replace("ohm", "Ω").replace("*", "·")
    return re.sub(r"\^(-?\d+)", lambda m: m.group(1).translate(_POWER), text)


def number(value: float, digits: int = 4) -> str:
    """`value` to `digits` significant figures; integral values as integers; no '1e+03'."""
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if 1e-3 <= abs(value) < 10 ** digits:
        text = f"{value:.{digits}g}"
        return text if "e" not in text else f"{value:.{digits - 1}f}"
    if 10 ** digits <= abs(value) < 1e9:
        return f"{value:.0f}"
    return f"{value:.{digits - 1}e}"


def quantity(value: float | str | None, unit: str | None = "") -> str:
    """A result as people read it: '3.2 mA/cm²', '52.05 Ω', 'hard_short', '—' for none."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    u = unit_text(unit)
    return f"{number(float(value))} {u}".rstrip()


def seconds(t_s: float | None) -> str:
    """A duration as '45 s', '12.5 min', '3.21 h' or '2.1 d'."""
    if t_s is None:
        return ""
    for limit, div, unit in ((120, 1, "s"), (7200, 60, "min"), (172800, 3600, "h")):
        if abs(t_s) < limit:
            return f"{number(t_s / div, 3)} {unit}"
    return f"{number(t_s / 86400, 3)} d"
