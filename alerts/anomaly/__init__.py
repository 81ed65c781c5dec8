"""Per-patient anomaly models: a baseline learned from the patient's own history.

- :mod:`alerts.anomaly.features` the features (pandas): a robust level per metric
- :mod:`alerts.anomaly.methods`  baseline methods (scikit-learn): robust z-score, quantile band,
  isolation forest (evaluated, not deployed: see docs/alerts.md for the measured comparison)
- :mod:`alerts.anomaly.detector` features + model -> ``anomaly`` candidates that say which features
  were abnormal and by how much
"""
