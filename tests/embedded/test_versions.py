"""Promotion on one machine (embedded/promotion.py) and its human override, `llmtwin promote`, `rollback` and
`status`, against the local MLflow registry `llmtwin up` uses (SQLite in the data directory)."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from llmtwin.api import names
from llmtwin.api.conditions import ConditionType, Reason, find_condition
from llmtwin.cli import app
from llmtwin.config import EmbeddedSettings
from llmtwin.embedded.promotion import LocalPromotion
from llmtwin.embedded.twin import local_settings, status_file
from llmtwin.models.versions import PRODUCTION_ALIAS, REJECTED_TAG
from tests.harness.mlflow import register_adapter
from tests.twins import example_twin


@pytest.fixture
def local(tmp_path, monkeypatch):
    """A twin file, its data dir with a local registry holding three versions, and the registry client."""
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    twin = example_twin()
    twin_file = tmp_path / "twin.yaml"
    twin_file.write_text(yaml.safe_dump(twin.model_dump(mode="json", by_alias=True, exclude_none=True)))
    data_dir = tmp_path / "data"
    uri = local_settings(data_dir, EmbeddedSettings(), twin).mlflow_tracking_uri
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    assert [register_adapter(uri, twin.namespace, twin.name, adapter) for _ in range(3)] == ["1", "2", "3"]
    client = MlflowClient(uri)
    model = names.registered_model_name(twin.namespace, twin.name)
    promotion = LocalPromotion(twin, status_file(data_dir), uri)
    return {"file": twin_file, "data_dir": data_dir, "client": client, "model": model, "promotion": promotion}


def cli(local, *args: str):
    return CliRunner().invoke(app, [*args, "-f", str(local["file"]), "--data-dir", str(local["data_dir"])])


def production(local) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(local["client"].get_model_version_by_alias(local["model"], PRODUCTION_ALIAS).version)
    except MlflowException:
        return None


def test_the_gate_promotes_and_a_human_rolls_back_and_overrides(local):
    promotion, status = local["promotion"], local["promotion"].status
    assert promotion.settle() is None  # nothing registered as a candidate: the base model

    # What the register step writes for a version that passed the gate.
    status.report(promotion.twin, {"candidateVersion": "1"})
    assert promotion.settle() == "1" and production(local) == "1"
    status.report(promotion.twin, {"candidateVersion": "2"})
    assert promotion.settle() == "2" and production(local) == "2"
    promoted = find_condition(status.read()["conditions"], ConditionType.PROMOTED)
    assert promoted["status"] == "True" and promoted["reason"] == Reason.CANARY_SUCCEEDED

    result = cli(local, "rollback")
    assert result.exit_code == 0, result.output
    assert "version 1 is production" in result.output
    current = promotion.current()
    assert current.model_version == "1" and production(local) == "1"
    assert [r.version for r in current.rejected_versions] == ["2"]
    assert local["client"].get_model_version(local["model"], "2").tags[REJECTED_TAG].startswith("rolled back")
    assert promotion.settle() == "1"  # the rolled-back candidate is not promoted again

    result = cli(local, "promote", "3")
    assert result.exit_code == 0, result.output
    assert promotion.settle() == "3" and production(local) == "3"
    assert cli(local, "promote", "9").exit_code == 1

    shown = cli(local, "status")
    assert shown.exit_code == 0, shown.output
    assert "production: version 3" in shown.output and "rejected:   version 2" in shown.output
    assert json.loads(cli(local, "status", "--json").output)["modelVersion"] == "3"

    # 3 goes, back to 1 (2 was rejected); 1 goes, back to the base model: no alias left.
    assert cli(local, "rollback").exit_code == 0 and production(local) == "1"
    assert cli(local, "rollback").exit_code == 0 and production(local) is None
    assert promotion.current().model_version is None
    assert "nothing to roll back" in cli(local, "rollback").output
