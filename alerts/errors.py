"""The exception tree of the alerts package.

::

    VigilError
    └── AlertsError                   .reason
        ├── AlertsConfigError         a rule set, policy or patient setting that cannot be used (.why)
        ├── ReplayInputError          a readings CSV that cannot be replayed (.problems: [(line, why)])
        ├── ModelError                an anomaly model that cannot be trained or loaded (.why)
        ├── LifecycleError            a lifecycle command that cannot be applied
        │   ├── AlertNotFound         .alert_id
        │   └── InvalidTransition     .alert_id .state .action  (e.g. acknowledging a resolved alert)
        └── MonitoringRequestError    a pause or baseline request that cannot be applied (.why)
            └── PatientNotFound       .patient_id

Messages carry ids and codes only, never readings or names (they may reach a log).
"""

from __future__ import annotations

from collections.abc import Sequence

from rpm_core.errors import VigilError

__all__ = [
    "AlertNotFound",
    "AlertsConfigError",
    "AlertsError",
    "InvalidTransition",
    "LifecycleError",
    "ModelError",
    "MonitoringRequestError",
    "PatientNotFound",
    "ReplayInputError",
]


class AlertsError(VigilError):
    reason = "alerts"


class AlertsConfigError(AlertsError, ValueError):
    """Also a ``ValueError`` so that pydantic validators report it as a validation error."""

    reason = "alerts_config"

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class ReplayInputError(AlertsError):
    reason = "replay_input"

    def __init__(self, problems: Sequence[tuple[int, str]]) -> None:
        first = problems[0] if problems else (0, "empty")
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"line {first[0]}: {first[1]}{more}")
        self.problems = tuple(problems)


class ModelError(AlertsError):
    reason = "anomaly_model"

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class LifecycleError(AlertsError):
    reason = "lifecycle"


class AlertNotFound(LifecycleError):
    reason = "alert_not_found"

    def __init__(self, alert_id: int) -> None:
        super().__init__(f"no alert {alert_id}")
        self.alert_id = alert_id


class InvalidTransition(LifecycleError):
    reason = "invalid_transition"

    def __init__(self, alert_id: int, state: str, action: str) -> None:
        super().__init__(f"cannot {action} alert {alert_id}: it is {state}")
        self.alert_id = alert_id
        self.state = state
        self.action = action


class MonitoringRequestError(AlertsError):
    """A monitoring pause or an accepted baseline that cannot be recorded (an end in the past, a
    rule that takes no baseline, a reason too long...)."""

    reason = "monitoring_request"

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class PatientNotFound(MonitoringRequestError):
    reason = "patient_not_found"

    def __init__(self, patient_id: str) -> None:
        super().__init__("no such patient")
        self.patient_id = patient_id
