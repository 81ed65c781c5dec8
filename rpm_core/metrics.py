"""The metric catalogue: every quantity Vigil stores, with its codes, unit and plausible range.

Values travel and are stored in the metric's canonical UCUM unit only; a value outside the
plausible range is physically impossible for a living patient (or a broken sensor) and is rejected
at the edge and again at ingest. Codes: LOINC (FHIR R4 vital-signs profile) and IEEE 11073-10101
MDC (``urn:iso:std:iso:11073:10101``), see docs/reference/clinical.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from rpm_core.errors import ImplausibleValue, UnknownMetric

__all__ = ["CATALOGUE", "METRIC_NAMES", "Metric", "check_value", "metric"]


@dataclass(frozen=True, slots=True)
class Metric:
    """One stored quantity. ``low``/``high`` bound the plausible range, both inclusive."""

    name: str
    unit: str
    loinc: str
    mdc: int | None
    low: float
    high: float
    display: str

    def is_plausible(self, value: float) -> bool:
        return math.isfinite(value) and self.low <= value <= self.high


_METRICS: Final = (
    Metric("heart_rate", "/min", "8867-4", 147842, 10.0, 350.0, "Heart rate"),
    # No MDC code is given for the RR interval in the clinical reference; LOINC only.
    Metric("rr_interval", "ms", "8637-1", None, 100.0, 6000.0, "R-R interval"),
    Metric("spo2", "%", "59408-5", 150456, 20.0, 100.0, "Oxygen saturation (pulse oximetry)"),
    Metric("bp_systolic", "mm[Hg]", "8480-6", 150021, 30.0, 320.0, "Systolic blood pressure"),
    Metric("bp_diastolic", "mm[Hg]", "8462-4", 150022, 10.0, 250.0, "Diastolic blood pressure"),
    Metric("bp_mean", "mm[Hg]", "8478-0", 150023, 20.0, 280.0, "Mean arterial pressure"),
    Metric("body_temperature", "Cel", "8310-5", 150364, 25.0, 45.0, "Body temperature"),
    Metric("body_weight", "kg", "29463-7", 188736, 0.5, 650.0, "Body weight"),
    Metric("bmi", "kg/m2", "39156-5", 188752, 5.0, 150.0, "Body mass index"),
    Metric("body_height", "m", "8302-2", 188740, 0.2, 2.8, "Body height"),
    Metric("glucose", "mg/dL", "41653-7", 160184, 5.0, 2000.0, "Glucose (capillary, glucometer)"),
    # From a glucose meter's measurement context (0x2A34). MDC_CONC_HBA1C is term 29148 of partition 2
    # (SCADA): 2 * 65536 + 29148. Laboratory assays report about 3-20 %; 2-25 % bounds what a living
    # patient can have.
    Metric("hba1c", "%", "4548-4", 160220, 2.0, 25.0, "Hemoglobin A1c/Hemoglobin.total in Blood"),
    Metric("respiratory_rate", "/min", "9279-1", 151562, 1.0, 90.0, "Respiratory rate"),
)

CATALOGUE: Final = MappingProxyType({m.name: m for m in _METRICS})
METRIC_NAMES: Final = frozenset(CATALOGUE)


def metric(name: str) -> Metric:
    """The catalogue entry for ``name``; raises :class:`UnknownMetric`."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UnknownMetric(name) from None


def check_value(name: str, value: float) -> float:
    """Return ``value`` if it is a plausible value of metric ``name``; raise otherwise."""
    m = metric(name)
    if not m.is_plausible(value):
        raise ImplausibleValue(name, value, m.low, m.high)
    return value
