"""The whole retrain workflow against a real MLflow server: `llmtwin train`, the gate, fetch-adapter."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from llmtwin.cli import app
from llmtwin.models.versions import CANDIDATE_ALIAS
from llmtwin.workflows.retrain.dataset import read_jsonl
from llmtwin.workflows.retrain.registry import experiment_name, registered_model_name
from llmtwin.workflows.retrain.workspace import RetrainWorkspace
from llmtwin.workflows.status import FileStatusReporter
from llmtwin.workflows.steps import run_step
from tests.retrain.conftest import step_context
from tests.retrain.tiny import noise_text

pytestmark = pytest.mark.slow


def twin_file(twin, path: Path) -> Path:
    path.write_text(yaml.safe_dump(twin.model_dump(mode="json", by_alias=True, exclude_none=True)))
    return path


def run_cli(args: list[str], tracking_uri: str):
    env = {"MLFLOW_TRACKING_URI": tracking_uri}
    return CliRunner().invoke(app, args, env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def trained(twin, mlflow_server, tmp_path_factory) -> dict:
    """One `llmtwin train` run on the author's corpus (a real retrain through the local runner)."""
    data_dir = tmp_path_factory.mktemp("train-data")
    path = twin_file(twin, data_dir / "twin.yaml")
    result = run_cli(
        ["train", "-f", str(path), "--data-dir", str(data_dir), "--event-id", "drift-1"], mlflow_server.tracking_uri
    )
    assert result.exit_code == 0, result.output
    [workspace] = (data_dir / "workspaces").iterdir()
    report = json.loads(RetrainWorkspace(workspace).report.read_text())
    status = json.loads((data_dir / "status.json").read_text())
    return {"workspace": RetrainWorkspace(workspace), "report": report, "status": status, "output": result.output}


def test_a_retrain_logs_the_run_and_registers_a_version_with_alias(trained, twin, mlflow_server):
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.tracking_uri)
    name = registered_model_name(twin)
    version = client.get_model_version_by_alias(name, CANDIDATE_ALIAS)
    assert trained["report"]["promoted"] and "the base model" in trained["report"]["reason"]
    assert trained["status"]["candidateVersion"] == version.version and trained["status"]["lastTraining"]
    assert f"version {version.version} promoted" in trained["output"]

    manifest = json.loads(trained["workspace"].manifest.read_text())
    assert version.tags["dataset_hash"] == manifest["hash"]
    assert version.tags["base_model"] == twin.spec.base_model.id
    assert version.tags["promoted"] == "true" and version.tags["code_version"].startswith("0.")
    assert "twin_generation" in version.tags and version.source == f"runs:/{version.run_id}/adapter"

    run = client.get_run(version.run_id)
    assert client.get_experiment(run.info.experiment_id).name == experiment_name(twin)
    assert run.data.params["lora_r"] == "8" and run.data.params["dataset_hash"] == manifest["hash"]
    assert run.data.params["event_id"] == "drift-1"
    assert run.data.metrics["candidate_perplexity"] < run.data.metrics["base_perplexity"]
    assert {"candidate_style_similarity", "gate_improvement", "train_tokens_per_second"} <= set(run.data.metrics)
    history = client.get_metric_history(version.run_id, "train_loss")
    assert [m.step for m in history] == list(range(1, twin.spec.training.max_steps + 1))

    def listed(path: str | None = None) -> set[str]:
        return {a.path for a in client.list_artifacts(version.run_id, path)}

    assert listed() == {"adapter", "dataset", "evaluation", "training"}
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= listed("adapter")
    assert listed("dataset") == {"dataset/manifest.json"} and listed("evaluation") == {"evaluation/report.json"}
    assert {"training/loss.png", "training/loss.json", "training/summary.json"} <= listed("training")


def test_fetch_adapter_downloads_the_registered_adapter(trained, twin, settings, tmp_path):
    version = trained["status"]["candidateVersion"]
    outputs = run_step(
        "fetch-adapter",
        {"version": version, "dest": str(tmp_path / "adapter")},
        step_context(twin, RetrainWorkspace(tmp_path), settings),
    )
    fetched = Path(outputs["adapter"])
    for artifact in ("adapter_config.json", "adapter_model.safetensors"):
        assert (fetched / artifact).read_bytes() == (trained["workspace"].adapter_dir / artifact).read_bytes()


def test_the_gate_refuses_a_candidate_trained_on_noise(trained, twin, settings, status_file, tmp_path):
    production = trained["status"]["candidateVersion"]
    rolled_out = twin.model_copy(deep=True)
    rolled_out.status.model_version = production  # the serving rollout made the first candidate production
    workspace = RetrainWorkspace(tmp_path / "sabotage")
    context = step_context(rolled_out, workspace, settings, FileStatusReporter(status_file))
    params = {"event_id": "drift-2", "reason": "sabotage"}
    run_step("retrain-dataset", params, context)
    rng = random.Random(3)
    noisy = [
        {**r, "completion": noise_text(rng, len(r["response"])) + "</s>\n"} for r in read_jsonl(workspace.train_file)
    ]
    workspace.train_file.write_text("".join(json.dumps(r) + "\n" for r in noisy))
    for name in ("retrain-train", "retrain-evaluate"):
        run_step(name, params, context)
    outputs = run_step("retrain-register", params, context)

    report = json.loads(workspace.report.read_text())
    assert outputs["promoted"] == "false" and not report["promoted"]
    assert report["gate"]["reference"] == "production" and report["production_version"] == production
    assert f"production (version {production})" in report["reason"] and "below the required" in report["reason"]
    assert report["models"]["candidate"]["perplexity"] > report["models"]["production"]["perplexity"]
    assert "candidateVersion" not in json.loads(status_file.read_text())

    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri)
    version = client.get_model_version(registered_model_name(twin), outputs["version"])
    assert version.tags["promoted"] == "false" and int(outputs["version"]) > int(production)
    # The alias `candidate` stays on the version that passed the gate; the refused one gets none.
    assert client.get_model_version_by_alias(registered_model_name(twin), CANDIDATE_ALIAS).version == production
    assert run_step("retrain-register", params, context) == outputs  # a retried step registers nothing new


def test_llmtwin_train_refuses_a_bad_spec_naming_the_field(make_twin, mlflow_server, tmp_path):
    bad = make_twin(lora={"r": 8, "targetModules": ["q_proj", "attn_fused"]})
    result = run_cli(
        ["train", "-f", str(twin_file(bad, tmp_path / "twin.yaml")), "--data-dir", str(tmp_path)],
        mlflow_server.tracking_uri,
    )
    assert result.exit_code == 2
    assert "spec.training.lora.targetModules" in result.output and "attn_fused" in result.output
    [workspace] = (tmp_path / "workspaces").iterdir()
    assert not RetrainWorkspace(workspace).dataset_dir.exists()
