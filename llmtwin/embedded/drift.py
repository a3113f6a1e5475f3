"""Drift on one machine: the gateway's chain, with the in-process queue for Kafka and the twin's
alerting rule evaluated here for Prometheus and Alertmanager.

    front door (Recorder) -> queries topic -> QueryGateway -> DriftMonitor -> every few seconds
    DriftRule (the PrometheusRule's condition: score > threshold, window >= minQuestions, for `for`)
    -> the alert in Alertmanager's webhook shape -> alerts topic -> AlertDispatcher, deciding from
    the status file (FileRetrainLedger) -> the local runner's retrain Workflow.

Everything after the rule is the code the cluster runs; only the rule's evaluation is local.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.corpus.store import ChunkStore
from llmtwin.drift.monitor import DriftMonitor, Evaluation
from llmtwin.drift.rule import DriftRule, webhook_payload
from llmtwin.events.alerts import WebhookPayload
from llmtwin.events.gateway import AlertDispatcher, DeadLetters, consume, handled
from llmtwin.events.http import publish_alerts
from llmtwin.events.queries import QueryGateway
from llmtwin.events.queue import InProcessQueue
from llmtwin.events.retrains import FileRetrainLedger
from llmtwin.events.submit import Submitter
from llmtwin.workflows.status import FileStatusReporter

log = logging.getLogger(__name__)
CONSUMER_GROUP = "embedded-drift"


class EmbeddedDrift:
    def __init__(
        self,
        twin: LLMTwin,
        queue: InProcessQueue,
        queries_topic: str,
        alerts_topic: str,
        status: FileStatusReporter,
        submitter: Submitter,
        dead_letters: DeadLetters,
        open_store: Callable[[LLMTwin], ChunkStore | None],
        clock: Callable[[], float] = time.time,
    ):
        self.twin = twin
        self.queue = queue
        self.queries_topic = queries_topic
        self.alerts_topic = alerts_topic
        self.status = status
        self.clock = clock
        self.monitor = DriftMonitor(self._lookup, open_store, clock)
        self.rule = DriftRule(twin)
        self.queries = QueryGateway(self.monitor, dead_letters)
        self.dispatcher = AlertDispatcher(FileRetrainLedger(twin, status), submitter, dead_letters, clock)
        self.queries_consumer = queue.consumer(queries_topic, CONSUMER_GROUP)
        self.alerts_consumer = queue.consumer(alerts_topic, CONSUMER_GROUP)
        self.last: Evaluation | None = None

    def _lookup(self, namespace: str, name: str) -> LLMTwin | None:
        return self.twin if (namespace, name) == (self.twin.namespace, self.twin.name) else None

    def evaluate(self) -> dict[str, Any] | None:
        """Score the window and evaluate the rule; a firing (or resolved) alert goes onto the alerts topic."""
        chunks = self.status.read().get("chunks")
        if chunks is not None:  # the corpus reference reloads when the chunk count moves
            self.twin.status.chunks = chunks
        self.last = self.monitor.evaluate().get((self.twin.namespace, self.twin.name), Evaluation(0, None))
        alert = self.rule.observe(self.last, self.clock())
        if alert is not None:
            log.warning("drift alert %s: %s", alert["status"], alert["annotations"]["description"])
            publish_alerts(self.queue, self.alerts_topic, WebhookPayload.model_validate(webhook_payload(alert)))
        return alert

    def run(self, evaluate_seconds: float, stop: threading.Event) -> list[threading.Thread]:
        """Consume questions, evaluate every `evaluate_seconds`, dispatch alerts; until `stop`."""

        def evaluate_loop() -> None:
            while not stop.wait(evaluate_seconds):
                try:
                    self.evaluate()
                except Exception:  # the collection busy for a moment: the next round tries again
                    log.exception("drift evaluation failed")

        queries = (self.queries_consumer, self.queries_topic, handled(self.queries.handle), stop)
        alerts = (self.alerts_consumer, self.alerts_topic, handled(self.dispatcher.handle), stop)
        loops = [
            threading.Thread(target=consume, args=queries, name="drift-queries", daemon=True),
            threading.Thread(target=consume, args=alerts, name="drift-alerts", daemon=True),
            threading.Thread(target=evaluate_loop, name="drift-evaluate", daemon=True),
        ]
        for loop in loops:
            loop.start()
        return loops
