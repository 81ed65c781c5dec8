"""NEWS2 (Royal College of Physicians, 2017) from the latest value of each parameter in a window.

Scored parameters: respiration rate, SpO2 (scale 1, or scale 2 for hypercapnic patients),
supplemental oxygen, systolic blood pressure, pulse, consciousness and temperature. Home devices
report neither consciousness nor oxygen therapy: consciousness is taken as *alert* and the patient as
breathing *air* unless the patient's settings say ``supplemental_oxygen``; every alert says so in its
evidence (``assumed``). Parameters with no reading in the window are listed as ``missing`` and add
nothing to the score. Observations are rounded as charted: whole numbers, temperature to 0.1 Cel.

Bands: 0-4 low (no alert); a single parameter scoring 3 is low-medium (alert ``medium``); 5-6
medium (alert ``high``); 7 or more high (alert ``critical``). With fewer than ``min_parameters``
measured the rule stays silent.

Confirmation (``confirm = 2``, default): below the immediate score (7) each parameter scores the
lower of its last two readings (taken within 72 hours of each other; a parameter without a
confirming reading is reported ``unconfirmed`` and scores nothing), so a single artefact reading
(a cold-finger SpO2 of 89 %) cannot move the aggregate; a score of 7 or more from the latest
readings alone fires at once.

Spot checks: a patient at home measures pulse, SpO2, temperature and blood pressure once each, one
after another. When the confirmed score is low but the latest readings alone reach
``unconfirmed_score`` (5, the RCP urgent-response threshold), the rule raises an *unconfirmed*
candidate at the latest score's band, listing the parameters to repeat (``detail.remeasure``); the
lifecycle opens it marked unconfirmed and asks the patient to repeat them now. The repeat confirms
it (the confirmed score) or, all low, clears and auto-resolves it.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from alerts.config import PatientConfig
from alerts.history import History
from alerts.model import Candidate, Kind, Obs, Outcome, Severity

__all__ = [
    "CONFIRM_SPAN",
    "PARAMETERS",
    "RULE",
    "News2Score",
    "evaluate_news2",
    "news2_band",
    "news2_score",
    "score_pulse",
    "score_respiration",
    "score_spo2",
    "score_systolic",
    "score_temperature",
]

RULE: Final = "news2"
# Readings further apart than this do not confirm each other.
CONFIRM_SPAN: Final = timedelta(hours=72)
PARAMETERS: Final = ("respiratory_rate", "spo2", "bp_systolic", "heart_rate", "body_temperature")

_SEVERITY: Final = {"low_medium": Severity.MEDIUM, "medium": Severity.HIGH, "high": Severity.CRITICAL}


def _whole(v: float) -> int:
    return math.floor(v + 0.5)


def score_respiration(v: float) -> int:
    r = _whole(v)
    if r <= 8:
        return 3
    if r <= 11:
        return 1
    if r <= 20:
        return 0
    if r <= 24:
        return 2
    return 3


def score_spo2(v: float, *, scale: int = 1, on_oxygen: bool = False) -> int:
    s = _whole(v)
    if scale == 1:
        return 3 if s <= 91 else 2 if s <= 93 else 1 if s <= 95 else 0
    if s <= 83:
        return 3
    if s <= 85:
        return 2
    if s <= 87:
        return 1
    if s <= 92 or not on_oxygen:  # 88-92, or >= 93 on air
        return 0
    return 1 if s <= 94 else 2 if s <= 96 else 3


def score_systolic(v: float) -> int:
    s = _whole(v)
    if s <= 90:
        return 3
    if s <= 100:
        return 2
    if s <= 110:
        return 1
    return 0 if s <= 219 else 3


def score_pulse(v: float) -> int:
    p = _whole(v)
    if p <= 40:
        return 3
    if p <= 50:
        return 1
    if p <= 90:
        return 0
    if p <= 110:
        return 1
    return 2 if p <= 130 else 3


def score_temperature(v: float) -> int:
    t = math.floor(v * 10 + 0.5) / 10
    if t <= 35.0:
        return 3
    if t <= 36.0:
        return 1
    if t <= 38.0:
        return 0
    return 1 if t <= 39.0 else 2


@dataclass(frozen=True, slots=True)
class News2Score:
    total: int
    subscores: dict[str, int]
    missing: tuple[str, ...]
    used: tuple[Obs, ...]
    on_oxygen: bool
    unconfirmed: tuple[str, ...] = ()

    @property
    def band(self) -> str:
        return news2_band(self.total, self.subscores)

    @property
    def measured(self) -> int:
        return len(PARAMETERS) - len(self.missing)


def news2_band(total: int, subscores: dict[str, int]) -> str:
    if total >= 7:
        return "high"
    if total >= 5:
        return "medium"
    if any(v == 3 for v in subscores.values()):
        return "low_medium"
    return "low"


def _subscore(name: str, value: float, *, scale: int, on_oxygen: bool) -> int:
    if name == "respiratory_rate":
        return score_respiration(value)
    if name == "spo2":
        return score_spo2(value, scale=scale, on_oxygen=on_oxygen)
    if name == "bp_systolic":
        return score_systolic(value)
    if name == "heart_rate":
        return score_pulse(value)
    return score_temperature(value)


def _subscore_of(key: tuple[str, str, int, bool], times: list[datetime], values: list[float], i: int) -> int:
    _, name, scale, on_oxygen = key
    return _subscore(name, values[i], scale=scale, on_oxygen=on_oxygen)


def _subscores(history: History, name: str, *, scale: int, on_oxygen: bool) -> list[int]:
    """The sub-score of every reading of parameter ``name`` (kept by the history between evaluations)."""
    return history.derived(name, (RULE, name, scale, on_oxygen), _subscore_of)


def _parameter(history: History, name: str, at: datetime, floor: datetime, confirm: int) -> tuple[int, int] | bool:
    """The readings ``[j, i)`` parameter ``name`` is scored from as of ``at`` (the last ``confirm``,
    all within ``CONFIRM_SPAN`` of the latest); False when its latest reading is not after ``floor``
    (missing), True when it has too few confirming readings (unconfirmed)."""
    times = history.times(name)
    i = bisect_right(times, at)
    if not i or times[i - 1] <= floor:
        return False
    # The last ``confirm`` readings, those not after ``latest - CONFIRM_SPAN`` left out.
    j = bisect_right(times, times[i - 1] - CONFIRM_SPAN, max(0, i - confirm), i)
    if i - j < confirm:
        return True
    return j, i


def news2_score(
    history: History, at: datetime, window: timedelta, *, scale: int, on_oxygen: bool, confirm: int = 1
) -> News2Score:
    """The score from the latest reading of each parameter in ``(at - window, at]``.

    With ``confirm`` > 1 each parameter scores the lowest of its last ``confirm`` readings, all taken
    within ``CONFIRM_SPAN`` of the latest; a parameter without such confirming readings is listed as
    ``unconfirmed`` and scores nothing, so one artefact reading cannot raise the aggregate.
    """
    subscores: dict[str, int] = {"consciousness": 0, "supplemental_oxygen": 2 if on_oxygen else 0}
    used: list[Obs] = []
    missing: list[str] = []
    unconfirmed: list[str] = []
    floor = at - window
    for name in PARAMETERS:
        span = _parameter(history, name, at, floor, confirm)
        if span is False:
            missing.append(name)
            continue
        if span is True:
            unconfirmed.append(name)
            continue
        j, i = span
        used.extend(history.series(name)[2][j:i])
        subscores[name] = min(_subscores(history, name, scale=scale, on_oxygen=on_oxygen)[j:i])
    return News2Score(sum(subscores.values()), subscores, tuple(missing), tuple(used), on_oxygen, tuple(unconfirmed))


def _bands(
    history: History, at: datetime, floor: datetime, *, scale: int, on_oxygen: bool, confirm: int
) -> tuple[int, str, int, str]:
    """What :func:`news2_score` would say, without building it: the latest readings' total and band,
    the parameters measured, and the band of the score confirmed by ``confirm`` readings."""
    total = confirmed = 2 if on_oxygen else 0
    three = three_confirmed = False
    measured = 0
    for name in PARAMETERS:
        times = history.times(name)
        i = bisect_right(times, at)
        if not i or times[i - 1] <= floor:
            continue
        measured += 1
        scores = history.derived(name, (RULE, name, scale, on_oxygen), _subscore_of)
        sub = scores[i - 1]
        total += sub
        three = three or sub == 3
        if confirm > 1:
            j = bisect_right(times, times[i - 1] - CONFIRM_SPAN, max(0, i - confirm), i)
            if i - j >= confirm:
                sub = min(scores[j:i])
                confirmed += sub
                three_confirmed = three_confirmed or sub == 3
    return total, _band(total, three), measured, _band(confirmed, three_confirmed)


def _band(total: int, three: bool) -> str:
    return "high" if total >= 7 else "medium" if total >= 5 else "low_medium" if three else "low"


def evaluate_news2(history: History, at: datetime, config: PatientConfig) -> Outcome:
    cfg = config.news2
    if not config.enabled(RULE):
        return Outcome()
    window = timedelta(hours=cfg.window_h)
    scale, on_oxygen = config.spo2_scale, config.supplemental_oxygen
    # The decision from the totals alone; the scores (with their evidence) only for a candidate.
    latest_total, latest_band, measured, confirmed_band = _bands(
        history, at, at - window, scale=scale, on_oxygen=on_oxygen, confirm=cfg.confirm
    )
    if measured < cfg.min_parameters:
        return Outcome()
    confirmed = latest_total < cfg.immediate_score and cfg.confirm > 1
    band = confirmed_band if confirmed else latest_band
    if band == "low" and latest_band == "low":
        # Clear only when the latest readings are low too (not while a high one awaits confirmation).
        return Outcome(clear=frozenset({RULE}))
    unconfirmed = cfg.unconfirmed_score
    if band == "low" and not (config.remeasure_unconfirmed and unconfirmed is not None and latest_total >= unconfirmed):
        return Outcome()
    latest = news2_score(history, at, window, scale=scale, on_oxygen=on_oxygen)
    score = latest
    if confirmed:
        score = news2_score(history, at, window, scale=scale, on_oxygen=on_oxygen, confirm=cfg.confirm)
    if band != "low":
        return Outcome((_candidate(score, latest, config),))
    # A spot check of several parameters, each read once: act now, at the unconfirmed band, and ask
    # for the repeat that confirms or refutes it.
    return Outcome((_candidate(latest, latest, config, unconfirmed_from=score),))


def _candidate(
    score: News2Score, latest: News2Score, config: PatientConfig, *, unconfirmed_from: News2Score | None = None
) -> Candidate:
    band = score.band
    on_oxygen = score.on_oxygen
    assumed = {
        "consciousness": "alert (assumed: home devices do not report it)",
        "supplemental_oxygen": "oxygen (patient setting)" if on_oxygen else "air (assumed: not reported)",
    }
    detail: dict[str, object] = {
        "score": score.total,
        "band": band,
        "subscores": score.subscores,
        "missing": list(score.missing),
        "unconfirmed": list(score.unconfirmed),
        "assumed": assumed,
        "spo2_scale": config.spo2_scale,
        "latest_score": latest.total,
        "confirmed": score is not latest,
        "window_h": config.news2.window_h,
    }
    summary = f"NEWS2 {score.total} ({band.replace('_', '-')} risk)"
    if unconfirmed_from is not None:
        # The parameters whose latest reading scores more than their confirmed value: repeat them.
        repeat = [p for p in PARAMETERS if score.subscores.get(p, 0) > unconfirmed_from.subscores.get(p, 0)]
        detail |= {
            "unconfirmed": repeat,
            "confirmed_score": unconfirmed_from.total,
            "remeasure": repeat,
            "awaiting_confirmation": True,
        }
        summary = f"unconfirmed: {summary} from single readings (re-measure requested)"
    return Candidate(
        rule=RULE,
        kind=Kind.NEWS2,
        metric=None,
        severity=_SEVERITY[band],
        summary=summary,
        evidence=score.used,
        detail=detail,
        unconfirmed=unconfirmed_from is not None,
    )
