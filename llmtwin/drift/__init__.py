"""Drift: every question the twin answers becomes a record (`records.py`) that the drift monitor
(`monitor.py`, in the gateway) windows per twin and scores with a detector (`detectors.py`); the
score is a Prometheus metric the twin's alerting rule watches (`rule.py` evaluates the same rule on a
laptop, where no Prometheus runs)."""
