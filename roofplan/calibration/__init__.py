"""Calibration: fit a catalog's efficiency parameters (and engine overheads) to a user's own
measurements and write an overlay (``schema: roofplan.calibration/v1``) that ``--calibration``
applies everywhere. Formats: docs/calibration.md."""

from roofplan.calibration.fit import CalibrationResult, Param, calibrate, split_cases
from roofplan.calibration.formats import KINDS, Measurement, read_measurements

__all__ = [
    "KINDS",
    "CalibrationResult",
    "Measurement",
    "Param",
    "calibrate",
    "read_measurements",
    "split_cases",
]
