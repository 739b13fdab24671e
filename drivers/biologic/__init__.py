"""BioLogic potentiostats. Importing this package never imports easy-biologic (Windows-only);
the adapter imports it lazily on `connect()`."""

from labctl_drivers.biologic.sp300 import (
    BiologicDLLError,
    EasyBiologicSP300,
    SP300Channel,
    translate,
)

__all__ = ["BiologicDLLError", "EasyBiologicSP300", "SP300Channel", "translate"]
