"""The drift loop end to end, on real servers: questions at two twins' front doors (`llmtwin frontdoor`
processes) -> Kafka `llmtwin.queries` -> the gateway's drift monitor (reading each twin's corpus sample
from a Milvus server) -> the gateway's /metrics -> Debian's Prometheus scraping it as the shipped
ServiceMonitor says, with the PrometheusRule the operator renders -> Debian's Alertmanager with the
shipped route -> the gateway's webhook -> Kafka -> the dispatcher -> exactly one retrain Workflow in the
API server for the twin whose questions left its corpus, none for the twin asked on topic. The operator
and the Argo Rollouts controller run too (the operator exports the claimed retrain from the twin's
status; the controller reconciles the twin's Rollout), and every panel of the shipped dashboard returns
data from that Prometheus."""

from __future__ import annotations

import json
import signal
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from llmtwin.api import names
from llmtwin.api.dashboard import PANELS
from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.operator.builders import prometheus_rule, resolved_twin
from llmtwin.operator.serving import front_door_monitor
from llmtwin.secrets import SecretFiles
from tests.drift.questions import OFF_TOPIC, ON_TOPIC
from tests.events.conftest import NAMESPACE, QUERIES_TOPIC, WEBHOOK_TOKEN, twin_doc, workflows
from tests.events.test_gateway import produce
from tests.harness import free_port, wait_for
from tests.harness.alertmanager import Alertmanager
from tests.harness.milvus_gate import SECRET, mount_secret, secret_data, secured_vector_store
from tests.harness.process import CliProcess
from tests.harness.prometheus import Prometheus
from tests.twins import DEMO_CORPUS_BUCKET, ROOT, ingest_demo_corpus

pytestmark = [pytest.mark.cluster, pytest.mark.kafka, pytest.mark.prometheus, pytest.mark.milvus, pytest.mark.slow]
DRIFT = {"window": "10m", "for": "3s", "minQuestions": 12}  # embedding-centroid, threshold 0.4
GATEWAY_MONITOR = yaml.safe_load((ROOT / "manifests/gateway/servicemonitor.yaml").read_text())
OPERATOR_MONITOR = yaml.safe_load((ROOT / "manifests/operator/podmonitor.yaml").read_text())
ROLLOUTS_MONITOR = yaml.safe_load((ROOT / "manifests/monitoring/argo-rollouts-servicemonitor.yaml").read_text())


def honors_labels(monitor_spec: dict) -> bool:
    """A ServiceMonitor's or PodMonitor's honorLabels (its one endpoint's)."""
    (endpoint,) = monitor_spec.get("endpoints") or monitor_spec["podMetricsEndpoints"]
    return endpoint.get("honorLabels", False)


def address(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


def drift_twin(kube_cluster, name: str, vector_store: dict) -> LLMTwin:
    doc = twin_doc(name, DEMO_CORPUS_BUCKET)
    doc["spec"]["drift"] = DRIFT
    doc["spec"]["vectorStore"].update(vector_store)
    kube_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    return LLMTwin.model_validate(doc)


def ask(url: str, question: str) -> dict:
    body = json.dumps({"question": question, "generate": False}).encode()
    request = urllib.request.Request(f"{url}/ask", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@pytest.fixture
def front_doors(kube_cluster, kafka_broker, tmp_path):
    """`llmtwin frontdoor` for each twin, as its Deployment runs it (the twin file, Kafka, no model server)."""
    started: dict[str, CliProcess] = {}

    def start(twin: LLMTwin, secrets_dir: Path | None = None) -> str:
        workdir = tmp_path / f"frontdoor-{twin.name}"
        workdir.mkdir()
        (workdir / "twin.json").write_text(json.dumps(resolved_twin(twin)))  # what its ConfigMap holds
        port = free_port()
        proc = CliProcess(
            ["frontdoor", "--port", str(port), "--host", "127.0.0.1"],
            {
                "LLMTWIN_TWIN_FILE": str(workdir / "twin.json"),
                "LLMTWIN_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
                "LLMTWIN_QUERIES_TOPIC": QUERIES_TOPIC,
                "LLMTWIN_SECRETS_DIR": str(secrets_dir or workdir / "secrets"),  # where its Deployment mounts them
                "HF_HUB_OFFLINE": "1",
            },
            workdir,
            f"http://127.0.0.1:{port}/healthz",
            f"frontdoor-{twin.name}",
        )
        proc.start(timeout=120)
        started[twin.name] = proc
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in started.values():
        proc.kill(signal.SIGTERM)


def test_questions_that_leave_the_corpus_start_exactly_one_retrain(
    kube_cluster,
    kafka_broker,
    milvus_server,
    milvus_gate,
    gateway,
    operator,
    rollouts_controller,
    front_doors,
    tmp_path,
):
    # The drifting twin's Milvus wants TLS and a token (the gate, a stand-in for a Milvus server's own): the gateway
    # reads them from the twin's Secret through the API, as its ServiceAccount, and the front door from its mount.
    literals = [f"--from-literal={key}={value}" for key, value in secret_data(milvus_gate).items()]
    kube_cluster.kubectl("create", "secret", "generic", SECRET, "-n", NAMESPACE, *literals)
    mounted = mount_secret(tmp_path / "secrets", milvus_gate)
    drifting = drift_twin(kube_cluster, "wanderer", secured_vector_store(milvus_gate))
    steady = drift_twin(kube_cluster, "homebody", {"uri": milvus_server.uri})
    ingest_demo_corpus(drifting, SecretFiles(mounted))
    ingest_demo_corpus(steady)

    rules = tmp_path / "rules.yml"
    groups = [group for twin in (drifting, steady) for group in prometheus_rule(twin)["spec"]["groups"]]
    rules.write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "token").write_text(WEBHOOK_TOKEN)
    with (
        Alertmanager(tmp_path, f"{gateway.url}/alertmanager", tmp_path / "token") as alertmanager,
        Prometheus([rules], alertmanager.url) as prometheus,
    ):
        urls = {drifting.name: front_doors(drifting, mounted), steady.name: front_doors(steady)}
        # Scraped as prometheus-operator scrapes the targets of the shipped monitors and of the twin's own
        # (honorLabels as each says), labelled as Kubernetes service discovery labels them.
        front_door = front_door_monitor(drifting)
        system = {"namespace": "llmtwin-system"}
        targets = [
            (honors_labels(GATEWAY_MONITOR["spec"]), gateway.url, {**system, "service": "llmtwin-gateway"}),
            (honors_labels(OPERATOR_MONITOR["spec"]), operator.metrics_url, {**system, "pod": "llmtwin-operator-0"}),
            (
                honors_labels(ROLLOUTS_MONITOR["spec"]),
                rollouts_controller.metrics_url,
                {"namespace": "argo-rollouts", "service": "argo-rollouts-metrics"},
            ),
        ] + [
            (
                honors_labels(front_door["spec"]),
                url,
                {"namespace": NAMESPACE, "service": names.front_door_name(name)},
            )
            for name, url in urls.items()
        ]
        for honor in (False, True):
            chosen = [(address(url), labels) for honors, url, labels in targets if honors == honor]
            prometheus.set_targets(chosen, honor_labels=honor)
        # A record no front door wrote: dead-lettered with its reason, the others proceed.
        produce(kafka_broker, QUERIES_TOPIC, b'{"type": "question", "twin": "x"}')
        for on_topic, off_topic in zip(ON_TOPIC, OFF_TOPIC, strict=True):
            assert ask(urls[steady.name], on_topic)["sources"]
            ask(urls[drifting.name], off_topic)

        refused = milvus_gate.refused
        runs = wait_for(lambda: workflows(kube_cluster, "retrain", drifting.name), 120, what="the drift retrain")
        assert milvus_gate.refused == refused  # the corpus sample came through the gate, with the token
        time.sleep(5)  # repeats from Alertmanager and further evaluations start nothing more
        assert len(workflows(kube_cluster, "retrain", drifting.name)) == 1
        assert workflows(kube_cluster, "retrain", steady.name) == []
        assert runs[0]["spec"]["arguments"]["parameters"]

        def series(metric: str, twin: LLMTwin) -> float:
            result = prometheus.query(f'{metric}{{namespace="{NAMESPACE}",twin="{twin.name}"}}')
            assert result, f"{metric} for {twin.name} not in Prometheus"
            return float(result[0]["value"][1])

        assert series(names.DRIFT_WINDOW_METRIC, steady) == len(ON_TOPIC)
        assert series(names.DRIFT_METRIC, steady) < 0.4 < series(names.DRIFT_METRIC, drifting)
        firing = prometheus.query(f'ALERTS{{alertname="{names.DRIFT_ALERT}",alertstate="firing"}}')
        assert {a["metric"][names.ALERT_TWIN_LABEL] for a in firing} == {drifting.name}
        # The dispatcher's claim in the twin's status, exported by the operator: one retrain, running.
        decision = f'{names.RETRAIN_DECISION_METRIC}{{namespace="{NAMESPACE}",twin="%s"}} == 1'
        running = wait_for(lambda: prometheus.query(decision % drifting.name), 30, what="the retrain decision")
        assert [r["metric"]["decision"] for r in running] == ["running"]
        assert prometheus.query(decision % steady.name) == []

        # The shipped dashboard, templated to the drifting twin: every panel's queries return data.
        empty = []
        for panel in PANELS:
            for legend, expr in panel.queries.items():
                query = expr.replace("$namespace", NAMESPACE).replace("$twin", drifting.name)
                try:
                    wait_for(lambda q=query: prometheus.query(q), 15, what=query)
                except AssertionError:
                    empty.append((panel.title, legend))
        assert empty == []
