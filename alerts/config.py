"""Rule configuration: the organisation defaults (from the clinical reference) and per-patient overrides.

:class:`RulesConfig` holds the defaults every patient starts from; it is part of the alert
settings (TOML table ``[alerts_rules]``). :class:`PatientConfig` reads the alert-related keys of a
patient's ``patients.settings`` document and resolves them against the defaults; keys it does not
know belong to other features and are ignored.

Threshold bands are nested per direction: a reading of SpO2 90 % lies in both the "<= 94" (seek
advice) and the "<= 92" (urgent) band, and the worst band whose confirmation is met wins.
Sources for every default: docs/alerts.md and docs/reference/clinical.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from alerts.errors import AlertsConfigError
from alerts.model import Severity
from rpm_core.metrics import METRIC_NAMES

__all__ = [
    "AnomalyConfig",
    "Band",
    "BaselineConfig",
    "BpGoal",
    "BpMargin",
    "LifecycleConfig",
    "MissingDataConfig",
    "News2Config",
    "PatientConfig",
    "RulesConfig",
    "TrendConfig",
    "default_bands",
]

SeverityName = Literal["low", "medium", "high", "critical"]
Op = Literal["<", "<=", ">", ">="]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class Band(_Frozen):
    """``value op threshold`` at ``severity``, confirmed when ``confirm`` of the last ``of`` readings
    (taken within ``within_h`` hours of the latest, the latest among them) are in the band, or by
    readings staying in the band for ``sustain_min`` minutes. Without ``of``: the last ``confirm``
    readings, all in the band (consecutive)."""

    op: Op
    value: float
    severity: SeverityName
    confirm: Annotated[int, Field(ge=1, le=20)] = 1
    of: Annotated[int, Field(ge=1, le=40)] | None = None
    within_h: Annotated[float, Field(gt=0, le=24 * 7)] = 24.0
    sustain_min: Annotated[float, Field(gt=0, le=24 * 60)] | None = None
    label: Annotated[str, Field(max_length=120)] = ""

    @model_validator(mode="after")
    def _of_at_least_confirm(self) -> Band:
        if self.of is not None and self.of < self.confirm:
            raise AlertsConfigError(f"a band confirmed by {self.confirm} of the last {self.of} readings")
        return self

    @property
    def last(self) -> int:
        """How many recent readings the confirmation looks at."""
        return self.of if self.of is not None else self.confirm

    @property
    def direction(self) -> Literal["low", "high"]:
        return "low" if self.op in ("<", "<=") else "high"

    @property
    def level(self) -> Severity:
        return Severity.parse(self.severity)

    def contains(self, value: float) -> bool:
        if self.op == "<":
            return value < self.value
        if self.op == "<=":
            return value <= self.value
        if self.op == ">":
            return value > self.value
        return value >= self.value


def _b(op: Op, value: float, severity: SeverityName, confirm: int, label: str, of: int | None = None) -> Band:
    return Band(op=op, value=value, severity=severity, confirm=confirm, of=of, label=label)


# Organisation defaults, scale 1 patients. See docs/alerts.md for the source of each line.
_DEFAULT_BANDS: Final[dict[str, tuple[Band, ...]]] = {
    "spo2": (
        _b("<=", 94, "medium", 2, "SpO2 93-94 %: seek advice (NHS England)"),
        _b("<=", 92, "high", 2, "SpO2 <= 92 %: urgent (NHS England)"),
        _b("<=", 85, "high", 1, "SpO2 <= 85 %: dangerously low, single reading"),
        _b("<=", 85, "critical", 2, "SpO2 <= 85 %: dangerously low, confirmed"),
    ),
    "bp_systolic": (
        _b(">", 180, "high", 2, "severe hypertension: systolic > 180 (ACC/AHA)"),
        _b(">=", 220, "critical", 1, "systolic >= 220 (NEWS2 3)"),
        _b("<=", 90, "high", 2, "hypotension: systolic <= 90 (NEWS2 3)"),
    ),
    "bp_diastolic": (_b(">", 120, "high", 2, "severe hypertension: diastolic > 120 (ACC/AHA)"),),
    "glucose": (
        _b("<", 70, "medium", 1, "level 1 hypoglycaemia < 70 mg/dL (ADA)"),
        _b("<", 54, "critical", 1, "level 2 hypoglycaemia < 54 mg/dL (ADA)"),
        _b(">", 180, "medium", 3, "hyperglycaemia > 180 mg/dL (ADA)"),
        _b(">", 250, "high", 2, "hyperglycaemia > 250 mg/dL (ADA)"),
    ),
    # Pulse confirms on N of the last N + 1 readings: a persistent tachycardia of 128-150 /min read
    # once at 129 between still confirms. (Measured on SpO2, where artefacts dominate, 2 of 3 let two
    # cold-finger dips within three readings page: docs/alerts.md.)
    "heart_rate": (
        _b("<=", 40, "high", 2, "bradycardia <= 40 /min (NEWS2 3)", of=3),
        _b(">=", 111, "medium", 3, "tachycardia 111-130 /min (NEWS2 2)", of=4),
        _b(">=", 131, "high", 2, "tachycardia >= 131 /min (NEWS2 3)", of=3),
    ),
    "body_temperature": (
        _b(">=", 38.1, "medium", 2, "fever 38.1-39.0 Cel (NEWS2 1)"),
        _b(">=", 39.1, "high", 2, "fever >= 39.1 Cel (NEWS2 2)"),
        _b("<=", 35.0, "high", 2, "hypothermia <= 35.0 Cel (NEWS2 3)"),
    ),
    "respiratory_rate": (
        _b(">=", 21, "medium", 2, "respiration 21-24 /min (NEWS2 2)"),
        _b(">=", 25, "high", 2, "respiration >= 25 /min (NEWS2 3)"),
        _b("<=", 8, "high", 2, "respiration <= 8 /min (NEWS2 3)"),
    ),
}
# Hypercapnic patients (SpO2 scale 2, target 88-92 %): bands follow the NEWS2 scale 2 on air.
_SCALE2_SPO2: Final = (
    _b("<=", 87, "medium", 2, "SpO2 86-87 % on scale 2 (NEWS2 1)"),
    _b("<=", 85, "high", 2, "SpO2 <= 85 % on scale 2 (NEWS2 2)"),
    _b("<=", 83, "high", 1, "SpO2 <= 83 % on scale 2 (NEWS2 3), single reading"),
    _b("<=", 83, "critical", 2, "SpO2 <= 83 % on scale 2 (NEWS2 3), confirmed"),
)


def default_bands() -> dict[str, tuple[Band, ...]]:
    return dict(_DEFAULT_BANDS)


def _check_metrics(v: Mapping[str, object]) -> None:
    unknown = set(v) - METRIC_NAMES
    if unknown:
        raise AlertsConfigError(f"unknown metrics {sorted(unknown)}")


class News2Config(_Frozen):
    window_h: Annotated[float, Field(gt=0, le=72)] = 24.0
    # Fewer measured parameters than this and the aggregate says too little to alert on.
    min_parameters: Annotated[int, Field(ge=1, le=5)] = 3
    # Each parameter scores the lower of its last ``confirm`` readings (one artefact does not page) ...
    confirm: Annotated[int, Field(ge=1, le=3)] = 2
    # ... unless the score reaches this (the RCP "high" band: emergency response).
    immediate_score: Annotated[int, Field(ge=1, le=20)] = 7
    # An aggregate this high from readings not confirmed yet (a spot check of several parameters,
    # each read once) opens an *unconfirmed* alert and asks the patient to repeat the measurements
    # now (RCP: 5 is the urgent-response threshold); None: wait silently for the confirmation.
    unconfirmed_score: Annotated[int, Field(ge=1, le=20)] | None = 5


class BpGoal(_Frozen):
    systolic: Annotated[float, Field(gt=60, lt=250)] = 130.0
    diastolic: Annotated[float, Field(gt=30, lt=150)] = 80.0


class BpMargin(_Frozen):
    systolic: Annotated[float, Field(ge=0, le=20)] = 3.0
    diastolic: Annotated[float, Field(ge=0, le=20)] = 2.0


class TrendConfig(_Frozen):
    # Weight gain (kg) per horizon in days; the HF guidance of the clinical reference.
    weight_gain_kg: dict[int, float] = Field(default_factory=lambda: {1: 1.4, 3: 2.0, 7: 2.3})
    weight_confirm: Annotated[int, Field(ge=1, le=5)] = 2
    # A faster change is a measuring artefact (someone else on the scale), not fluid.
    max_plausible_kg_per_day: Annotated[float, Field(gt=0)] = 4.0
    # The weight a gain is measured from: the median of the weighings of this many days before the
    # horizon (one low weighing does not make an ordinary one look like a gain).
    weight_baseline_days: Annotated[float, Field(gt=0, le=14)] = 3.0
    # Hysteresis: an open gain alert is clear only once every gain is this far below its limit.
    weight_clear_margin_kg: Annotated[float, Field(ge=0, le=2)] = 0.3
    # Home BP goal (ACC/AHA: < 130/80 at home) and home hypertension (ESH, AHA/AMA, Hypertension
    # Canada: >= 135/85 at home, the office 140/90).
    bp_goal: BpGoal = BpGoal()
    bp_stage2: BpGoal = BpGoal(systolic=135.0, diastolic=85.0)
    # Home BP monitoring protocol (ESH 2010/2021, AHA/AMA 2020): the mean of every reading of the
    # last bp_window_days, the first day's readings discarded, at least bp_min_readings readings
    # spanning bp_min_span_days; a patient taking single rather than duplicate readings needs more
    # days, so the window grows (up to bp_max_window_days) until it holds enough readings.
    bp_window_days: Annotated[int, Field(ge=1, le=30)] = 7
    bp_max_window_days: Annotated[int, Field(ge=1, le=60)] = 14
    bp_min_readings: Annotated[int, Field(ge=1)] = 12
    bp_min_span_days: Annotated[float, Field(ge=0)] = 3.0
    bp_discard_first_day: bool = True
    # Hysteresis around the goal: a mean opens the alert only this far above the goal (the mean of
    # a dozen home readings is uncertain by about this much) ...
    bp_open_margin: BpMargin = BpMargin(systolic=1.0, diastolic=1.0)
    # ... and an open alert is clear only once both means are this far below the goal.
    bp_clear_margin: BpMargin = BpMargin()

    @field_validator("weight_gain_kg")
    @classmethod
    def _horizons(cls, v: dict[int, float]) -> dict[int, float]:
        if not v or any(d < 1 or d > 30 or kg <= 0 for d, kg in v.items()):
            raise AlertsConfigError("weight_gain_kg needs horizons of 1-30 days with positive gains")
        return v


class MissingDataConfig(_Frozen):
    after_h: Annotated[float, Field(gt=0)] = 72.0
    # A device uploading stored history (readings measured long before they arrive) is not silent:
    # missing data waits until no old reading of the patient has arrived for this long ...
    backfill_settle_min: Annotated[float, Field(ge=0, le=24 * 60)] = 30.0
    # ... but no longer than this after the upload began (a device trickling old readings forever
    # must not switch the rule off).
    backfill_max_hold_h: Annotated[float, Field(ge=0, le=72)] = 6.0
    # Silence longer than this many typical gaps between the patient's readings also counts.
    cadence_factor: Annotated[float, Field(ge=1)] = 4.0
    lookback_days: Annotated[int, Field(ge=2, le=60)] = 14
    # "Usually measures": readings on at least this many of the lookback days.
    min_days: Annotated[int, Field(ge=1)] = 7
    device_not_seen_h: Annotated[float, Field(gt=0)] = 7 * 24.0
    agent_not_seen_h: Annotated[float, Field(gt=0)] = 24.0
    low_battery_pct: Annotated[int, Field(ge=0, le=100)] = 15


class AnomalyConfig(_Frozen):
    enabled: bool = True
    method: Literal["robust_z", "quantile"] = "robust_z"
    min_days: Annotated[int, Field(ge=3)] = 14
    train_days: Annotated[int, Field(ge=7, le=365)] = 60
    # The most recent days are left out of training, so a slow drift is judged against the time before
    # it instead of being learnt as the new normal (measured: docs/alerts.md).
    guard_days: Annotated[int, Field(ge=0, le=60)] = 7
    retrain_h: Annotated[float, Field(gt=0)] = 24.0
    z: Annotated[float, Field(gt=0)] = 4.0
    # Hysteresis (robust_z): an open anomaly alert is clear only below z - clear_margin_z.
    clear_margin_z: Annotated[float, Field(ge=0)] = 1.0
    quantile_margin: Annotated[float, Field(ge=0)] = 1.0


class BaselineConfig(_Frozen):
    # A threshold alert open this many days at one severity, still firing, is suggested to the
    # clinicians as the patient's own baseline (an alert event ``baseline_suggested``).
    suggest_after_days: Annotated[float, Field(gt=0, le=365)] = 14.0
    # The suggested value: this quantile of the readings of those days on the rule's side (the
    # 10th percentile for a "low" rule, the 90th for a "high" one): the patient's usual extreme.
    quantile: Annotated[float, Field(gt=0, lt=0.5)] = 0.1


class LifecycleConfig(_Frozen):
    auto_resolve_after_h: Annotated[float, Field(ge=0)] = 24.0
    # Per rule key or prefix, the longest match wins: missing data resolves as soon as readings
    # resume; a 7-day mean must stay below goal for days before its alert goes (no weekly flapping).
    auto_resolve_overrides_h: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: {"missing_data": 0.0, "trend:bp_goal": 72.0}
    )

    def auto_resolve_after(self, rule: str) -> timedelta:
        parts = rule.split(":")
        for i in range(len(parts), 0, -1):
            hours = self.auto_resolve_overrides_h.get(":".join(parts[:i]))
            if hours is not None:
                return timedelta(hours=hours)
        return timedelta(hours=self.auto_resolve_after_h)


class RulesConfig(_Frozen):
    thresholds: dict[str, tuple[Band, ...]] = Field(default_factory=default_bands)
    spo2_scale2: tuple[Band, ...] = _SCALE2_SPO2
    news2: News2Config = News2Config()
    trend: TrendConfig = TrendConfig()
    missing_data: MissingDataConfig = MissingDataConfig()
    anomaly: AnomalyConfig = AnomalyConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    baseline: BaselineConfig = BaselineConfig()
    # A single reading in a band that needs confirming (and a NEWS2 aggregate from single readings)
    # opens an unconfirmed alert asking the patient to repeat the measurement; False: wait silently.
    remeasure_unconfirmed: bool = True

    @field_validator("thresholds")
    @classmethod
    def _known(cls, v: dict[str, tuple[Band, ...]]) -> dict[str, tuple[Band, ...]]:
        """Configured metrics replace their defaults; the others keep them (``[]`` turns one off)."""
        _check_metrics(v)
        return {**_DEFAULT_BANDS, **v}


class _PatientDoc(_Frozen):
    """The alert-related keys of ``patients.settings`` (everything else there is ignored)."""

    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    spo2_scale: Literal[1, 2] = 1
    supplemental_oxygen: bool = False
    thresholds: dict[str, tuple[Band, ...]] = Field(default_factory=dict)
    bp_goal: BpGoal | None = None
    weight_gain_kg: dict[int, float] | None = None
    expected_metrics: tuple[str, ...] | None = None
    missing_data_after_h: Annotated[float, Field(gt=0)] | None = None
    news2_window_h: Annotated[float, Field(gt=0, le=72)] | None = None
    disabled_rules: frozenset[str] = frozenset()
    anomaly: bool = True

    @field_validator("thresholds")
    @classmethod
    def _known_thresholds(cls, v: dict[str, tuple[Band, ...]]) -> dict[str, tuple[Band, ...]]:
        _check_metrics(v)
        return v

    @field_validator("expected_metrics")
    @classmethod
    def _known(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is not None:
            _check_metrics(dict.fromkeys(v))
        return v


class PatientConfig(_Frozen):
    """The rules as they apply to one patient: organisation defaults with the patient's overrides."""

    spo2_scale: Literal[1, 2] = 1
    supplemental_oxygen: bool = False
    bands: dict[str, tuple[Band, ...]]
    news2: News2Config
    trend: TrendConfig
    missing_data: MissingDataConfig
    expected_metrics: tuple[str, ...] | None = None
    anomaly: bool = True
    disabled_rules: frozenset[str] = frozenset()
    remeasure_unconfirmed: bool = True
    anomaly_clear_margin_z: float = 1.0
    # Baselines a clinician accepted as the patient's own: rule key -> the patient's usual value.
    baselines: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def resolve(
        cls,
        rules: RulesConfig,
        settings: Mapping[str, Any] | None = None,
        baselines: Mapping[str, float] | None = None,
    ) -> PatientConfig:
        """Apply a patient's ``settings`` document and accepted baselines; raise
        :class:`AlertsConfigError` naming bad keys."""
        try:
            doc = _PatientDoc.model_validate(dict(settings or {}))
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
            raise AlertsConfigError(f"invalid patient alert settings: {fields}") from exc
        bands = dict(rules.thresholds)
        if doc.spo2_scale == 2:
            bands["spo2"] = rules.spo2_scale2
        bands.update(doc.thresholds)
        trend = rules.trend
        if doc.bp_goal is not None or doc.weight_gain_kg is not None:
            trend = trend.model_copy(
                update={
                    "bp_goal": doc.bp_goal or trend.bp_goal,
                    "weight_gain_kg": doc.weight_gain_kg or trend.weight_gain_kg,
                }
            )
        missing = rules.missing_data
        if doc.missing_data_after_h is not None:
            missing = missing.model_copy(update={"after_h": doc.missing_data_after_h})
        news2 = rules.news2
        if doc.news2_window_h is not None:
            news2 = news2.model_copy(update={"window_h": doc.news2_window_h})
        return cls(
            spo2_scale=doc.spo2_scale,
            supplemental_oxygen=doc.supplemental_oxygen,
            bands=bands,
            news2=news2,
            trend=trend,
            missing_data=missing,
            expected_metrics=doc.expected_metrics,
            anomaly=doc.anomaly and rules.anomaly.enabled,
            disabled_rules=doc.disabled_rules,
            remeasure_unconfirmed=rules.remeasure_unconfirmed,
            anomaly_clear_margin_z=rules.anomaly.clear_margin_z,
            baselines=dict(baselines or {}),
        )

    def enabled(self, rule: str) -> bool:
        """A rule key is disabled by its full key or any prefix (``trend`` disables every trend rule)."""
        if not self.disabled_rules:
            return True
        parts = rule.split(":")
        return not any(":".join(parts[:i]) in self.disabled_rules for i in range(1, len(parts) + 1))
