"""Alerts: readings in, alerts a clinician can act on out (docs/alerts.md).

- ``alerts.rules``    pure clinical rules (threshold, NEWS2, trend, missing data)
- ``alerts.anomaly``  per-patient baselines (pandas features, scikit-learn)
- ``alerts.evaluator`` which rules run on new readings and which on the schedule
- ``alerts.lifecycle`` pure lifecycle decisions shared by the engine and the replay
- ``alerts.engine``   ``vigil alerts run``: watermark feed, partitions, schedule (with ``book``,
  ``scheduled``, ``models_store``)
- ``alerts.escalation`` policies, the walk and the ``EscalationSink`` plug point
- ``alerts.service``  clinician actions; ``alerts.replay`` what would have fired
- ``alerts.monitoring`` monitoring pauses and baselines accepted as a patient's own
- ``alerts.errors``   the package's exception tree

Imports ``rpm_core``, ``store`` and ``consult``; never ``ingest`` (the database is the contract).
"""
