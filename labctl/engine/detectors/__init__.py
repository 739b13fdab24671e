"""Failure detectors for constant-current segments: a readable definition and a fast path.

`reference.ReferenceDetector` is the definition, one sample at a time. `fast.FailureDetector`,
the one the engine uses, makes the same decisions a poll at a time with numpy, and falls back to
the reference's per-sample code from a poll's first trip on and for a segment holding NaN/inf.
tests/engine/test_detectors_vectorised.py drives the two with hypothesis and requires the same
trips and learned references, bit for bit.
"""

from __future__ import annotations

from labctl.engine.detectors.fast import FailureDetector
from labctl.engine.detectors.reference import (
    MIN_SIGMA_V,
    REFERENCE_SEGMENTS,
    SHORT_ASR_OHM_CM2,
    ReferenceDetector,
    Trip,
)

__all__ = ["MIN_SIGMA_V", "REFERENCE_SEGMENTS", "SHORT_ASR_OHM_CM2", "FailureDetector",
           "ReferenceDetector", "Trip"]
