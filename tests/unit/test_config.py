"""Settings: read once from the environment, bad values named by their variable, shipped ConfigMaps valid."""

import pytest
import yaml

from llmtwin.config import GatewaySettings, OperatorSettings, PlatformSettings, SettingsError, StepSettings, load
from tests.twins import ROOT


def test_a_bad_value_is_refused_naming_its_variable(monkeypatch):
    monkeypatch.setenv("LLMTWIN_RESYNC_SECONDS", "soon")
    with pytest.raises(SettingsError, match=r"^LLMTWIN_RESYNC_SECONDS: "):
        load(OperatorSettings)
    monkeypatch.setenv("LLMTWIN_GATEWAY_SUBMIT_WORKERS", "0")
    with pytest.raises(SettingsError, match=r"^LLMTWIN_GATEWAY_SUBMIT_WORKERS: .*greater than or equal to 1"):
        load(GatewaySettings)
    monkeypatch.setenv("LLMTWIN_STATUS_SINK", "somewhere")
    with pytest.raises(SettingsError, match=r"^LLMTWIN_STATUS_SINK: "):
        load(StepSettings)


def test_values_come_from_their_variables(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("LLMTWIN_WORKFLOW_IMAGE", "registry.local/steps:1")
    monkeypatch.setenv("LLMTWIN_GATEWAY_NAMESPACES", "a, b")
    monkeypatch.setenv("KUBECONFIG", "/tmp/kubeconfig")
    gateway = load(GatewaySettings)
    assert gateway.mlflow_tracking_uri == "http://mlflow:5000" and gateway.workflow_image == "registry.local/steps:1"
    assert gateway.namespaces == ["a", "b"] and gateway.kubeconfig == "/tmp/kubeconfig"


def test_the_platform_travels_to_pods_under_the_names_it_is_read_by():
    settings = PlatformSettings(kafka_bootstrap="k:9092", mlflow_tracking_uri="http://m:5000")
    env = settings.as_env()
    assert env["LLMTWIN_KAFKA_BOOTSTRAP"] == "k:9092" and env["MLFLOW_TRACKING_URI"] == "http://m:5000"
    assert set(env) == {PlatformSettings.env_name(f) for f in PlatformSettings.model_fields}
    # A step reading this environment sees the same platform.
    assert StepSettings.model_validate(env).mlflow_tracking_uri == "http://m:5000"


def test_the_shipped_settings_configmap_holds_only_real_settings(monkeypatch):
    """manifests/operator/settings.yaml is read by the operator and gateway (envFrom): every key must be
    a variable they read, and the values must load."""
    data = yaml.safe_load((ROOT / "manifests/operator/settings.yaml").read_text())["data"]
    known = {PlatformSettings.env_name(f) for f in PlatformSettings.model_fields}
    assert set(data) <= known, set(data) - known
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    assert load(OperatorSettings).s3_secret == data["LLMTWIN_S3_SECRET"]
    assert load(GatewaySettings).kafka_bootstrap == data["LLMTWIN_KAFKA_BOOTSTRAP"]
