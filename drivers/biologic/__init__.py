"""BioLogic potentiostats: the SP-300 adapter over the EC-Lab Development Package's DLL calls.

`SP300(eclib, address=...)` is the `Potentiostat`; `eclib` is BioLogic's DLL through
easy-biologic (`EasyBiologicEClib`, Windows) or a simulated instrument firmware. Importing this
package never imports easy-biologic (Windows-only): `EasyBiologicEClib` imports it on connect.
"""

from labctl_drivers.biologic.adapter import (
    SP300,
    SP300Busy,
    SP300Channel,
    SP300FirmwareError,
    SP300LinkError,
    SP300Refused,
)
from labctl_drivers.biologic.easy_eclib import EasyBiologicEClib
from labctl_drivers.biologic.eclib import EClib, EClibError
from labctl_drivers.biologic.translate import (
    Program,
    TechniquePlan,
    check_sequence,
    check_technique,
    translate,
    translate_sequence,
)

__all__ = [
    "SP300", "EClib", "EClibError", "EasyBiologicEClib", "Program", "SP300Busy", "SP300Channel",
    "SP300FirmwareError", "SP300LinkError", "SP300Refused", "TechniquePlan", "check_sequence",
    "check_technique", "translate", "translate_sequence",
]
