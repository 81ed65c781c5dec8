"""Pure alert rules: functions of a patient's :class:`~alerts.history.History`, an evaluation time and
the patient's :class:`~alerts.config.PatientConfig`. No I/O, no clock: the caller passes ``at``.

- :mod:`alerts.rules.threshold`  per-metric bands with severities and confirmation
- :mod:`alerts.rules.news2`      the Royal College of Physicians' NEWS2 aggregate
- :mod:`alerts.rules.trend`      weight gain over 1/3/7 days, 7-day mean blood pressure above goal
- :mod:`alerts.rules.missing_data` a usual measurement stopped; a device or agent silent or low on battery
"""
