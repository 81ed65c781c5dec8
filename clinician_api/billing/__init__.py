"""CMS remote physiologic monitoring billing evidence (2026 physician fee schedule), pure.

Per patient: set-up (99453) once per episode, device supply (99454 / 99445) per 30-day period,
management time (99470 / 99457 / 99458) per calendar month; each code says whether the evidence
supports it and, if not, what is missing. The rules live in one table (:mod:`.rules`); days and
months are the practice's calendar (a time zone passed in). See docs/billing.md.
"""

from __future__ import annotations

from clinician_api.billing.errors import BillingError, InvalidBillingInput
from clinician_api.billing.evaluate import (
    PERIOD_DAYS,
    evaluate_episode_setup,
    evaluate_for_month,
    evaluate_month,
    evaluate_period,
)
from clinician_api.billing.model import (
    Capture,
    CodeEvaluation,
    Episode,
    Evaluation,
    PatientBilling,
    ReadingDay,
    ReadingSource,
    SetupEvent,
    TimeEntry,
    TimeKind,
    local_date,
    reading_days,
)
from clinician_api.billing.report import COLUMNS, Row, csv_text, org_month_rows, rows
from clinician_api.billing.rules import RULES, RULES_BY_CODE, SOURCES, Basis, Rule, Source

__all__ = [
    "COLUMNS",
    "PERIOD_DAYS",
    "RULES",
    "RULES_BY_CODE",
    "SOURCES",
    "Basis",
    "BillingError",
    "Capture",
    "CodeEvaluation",
    "Episode",
    "Evaluation",
    "InvalidBillingInput",
    "PatientBilling",
    "ReadingDay",
    "ReadingSource",
    "Row",
    "Rule",
    "SetupEvent",
    "Source",
    "TimeEntry",
    "TimeKind",
    "csv_text",
    "evaluate_episode_setup",
    "evaluate_for_month",
    "evaluate_month",
    "evaluate_period",
    "local_date",
    "org_month_rows",
    "reading_days",
    "rows",
]
