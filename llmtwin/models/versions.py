"""A twin's adapter versions in the MLflow model registry: which one is the candidate, which one is production,
and which were rejected and why.

- alias `candidate`: the latest version that passed the evaluation gate (the retrain's register step sets
  it; a version the gate refused never gets it);
- alias `production`: the version serving production, moved by whoever promotes (the operator after a
  successful canary; `llmtwin up`, `llmtwin promote` and `llmtwin rollback` on one machine);
- tags: `production_at` (when a version became production: what `rollback` goes back by) and `rejected`
  (the reason a candidate never reached production, or left it).

Every function is idempotent: a promotion retried after a failed status write changes nothing more.
"""

from __future__ import annotations

from typing import Any

from llmtwin.api.timestamps import now

CANDIDATE_ALIAS = "candidate"
PRODUCTION_ALIAS = "production"
PRODUCTION_AT_TAG = "production_at"
REJECTED_TAG = "rejected"
MAX_TAG_VALUE = 5000  # MLflow's limit on a tag's value


def _client(tracking_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _alias(mlflow: Any, model_name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow.get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def production_version(tracking_uri: str, model_name: str) -> str | None:
    return _alias(_client(tracking_uri), model_name, PRODUCTION_ALIAS)


def mark_candidate(tracking_uri: str, model_name: str, version: str) -> None:
    _client(tracking_uri).set_registered_model_alias(model_name, CANDIDATE_ALIAS, version)


def promote(tracking_uri: str, model_name: str, version: str) -> None:
    """`version` serves production from now on."""
    mlflow = _client(tracking_uri)
    if _alias(mlflow, model_name, PRODUCTION_ALIAS) == version:
        return
    mlflow.set_model_version_tag(model_name, version, PRODUCTION_AT_TAG, now())
    mlflow.set_registered_model_alias(model_name, PRODUCTION_ALIAS, version)


def demote(tracking_uri: str, model_name: str) -> None:
    """No version serves production: the base model does."""
    mlflow = _client(tracking_uri)
    if _alias(mlflow, model_name, PRODUCTION_ALIAS) is not None:
        mlflow.delete_registered_model_alias(model_name, PRODUCTION_ALIAS)


def reject(tracking_uri: str, model_name: str, version: str, reason: str) -> None:
    """Tag `version` with why it is not (or no longer) production; it loses the `candidate` alias."""
    mlflow = _client(tracking_uri)
    mlflow.set_model_version_tag(model_name, version, REJECTED_TAG, reason[:MAX_TAG_VALUE] or "rejected")
    if _alias(mlflow, model_name, CANDIDATE_ALIAS) == version:
        mlflow.delete_registered_model_alias(model_name, CANDIDATE_ALIAS)


def previous_production(tracking_uri: str, model_name: str, current: str | None) -> str | None:
    """The version that was production before `current` and was not rejected since; None: the base model."""
    mlflow = _client(tracking_uri)
    earlier = [
        v
        for v in mlflow.search_model_versions(f"name = '{model_name}'")
        if PRODUCTION_AT_TAG in v.tags and REJECTED_TAG not in v.tags and str(v.version) != current
    ]
    if not earlier:
        return None
    return str(max(earlier, key=lambda v: (v.tags[PRODUCTION_AT_TAG], int(v.version))).version)
