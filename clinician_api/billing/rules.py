"""The CMS remote physiologic monitoring (RPM) billing rules: ONE table, one row per code.

A rule change (a threshold, a cap, a new code) is an edit of one row of :data:`RULES`; the
evaluation in :mod:`.evaluate` reads nothing else. :data:`SOURCES` says where each row comes from
and how far it was verified (docs/billing.md has the details).

Columns
    ``basis``: what the code is counted over (the episode's first 30-day period, each 30-day
    device-supply period from the episode start, or the calendar month); ``min_days``/``max_days``:
    days with device-transmitted readings in the period (inclusive); ``min_minutes``/
    ``max_minutes``: management minutes in the calendar month (inclusive); ``step_minutes``: each
    further unit needs this many more minutes; ``max_units`` (``None``: no cap set by CMS);
    ``interactive``: at least one interactive communication in the month; ``setup_event``: a
    recorded set-up and education session; ``requires``: another code that must be eligible in the
    same evaluation; ``instead``: the code that applies when the evidence is above this code's range.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = ["RULES", "RULES_BY_CODE", "SOURCES", "Basis", "Rule", "Source"]


class Basis(enum.StrEnum):
    EPISODE = "episode"
    PERIOD = "30-day period"
    MONTH = "calendar month"


@dataclass(frozen=True, slots=True)
class Source:
    title: str
    where: str
    verified: str


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    basis: Basis
    what: str
    min_days: int | None = None
    max_days: int | None = None
    min_minutes: int | None = None
    max_minutes: int | None = None
    step_minutes: int | None = None
    max_units: int | None = 1
    interactive: bool = False
    setup_event: bool = False
    requires: str | None = None
    instead: str | None = None
    sources: tuple[str, ...] = ()


SOURCES: Final = MappingProxyType(
    {
        "pfs2026": Source(
            "CY 2026 Medicare Physician Fee Schedule final rule (CMS-1832-F), 90 FR 49266, 5 Nov 2025",
            "federalregister.gov/d/2025-19787",
            "Identified; the RPM section's text itself could not be read here. The 2026 rows agree with several "
            "independent summaries of the final rule (code descriptors, 2-15 days, 10 minutes, not additive).",
        ),
        "pfs2021": Source(
            "CY 2021 PFS final rule and its January 2021 correction (CMS-1734-F)",
            "federalregister.gov (CY 2021 PFS); quoted in law-firm summaries",
            "Quoted text read: device codes once per patient per 30-day period whatever the number of devices, by "
            "one practitioner; the 20 minutes include interactive communication and care-management time.",
        ),
        "pfs2019": Source(
            "CY 2019 PFS final rule; CPT 2019-2020 RPM descriptors",
            "federalregister.gov (CY 2019 PFS)",
            "From summaries: 99453 once per episode of care; device data must be transmitted automatically "
            "(not self-reported); 99458 each additional 20 minutes, add-on to 99457.",
        ),
    }
)

# One row per code (long rows stay on one line on purpose: a rule change is a one-line diff).
RULES: Final[tuple[Rule, ...]] = (
    Rule("99453", Basis.EPISODE, "set-up and patient education", min_days=2, setup_event=True, sources=("pfs2019", "pfs2026")),  # noqa: E501
    Rule("99454", Basis.PERIOD, "device supply, 16-30 days", min_days=16, max_days=30, sources=("pfs2021", "pfs2026")),
    Rule("99445", Basis.PERIOD, "device supply, 2-15 days", min_days=2, max_days=15, instead="99454", sources=("pfs2026",)),  # noqa: E501
    Rule("99470", Basis.MONTH, "management, first 10 minutes", min_minutes=10, max_minutes=19, interactive=True, instead="99457", sources=("pfs2026",)),  # noqa: E501
    Rule("99457", Basis.MONTH, "management, first 20 minutes", min_minutes=20, interactive=True, sources=("pfs2021",)),
    Rule("99458", Basis.MONTH, "management, each additional 20 minutes", min_minutes=40, step_minutes=20, max_units=None, interactive=True, requires="99457", sources=("pfs2019", "pfs2021")),  # noqa: E501
)  # fmt: skip

RULES_BY_CODE: Final = MappingProxyType({r.code: r for r in RULES})
