"""Question and feedback records (the queries topic) -> the drift monitor; unusable ones to the DLQ."""

from __future__ import annotations

import logging
import threading

from llmtwin.drift.monitor import DriftMonitor
from llmtwin.drift.records import MalformedRecord, decode
from llmtwin.events.gateway import CONSUMED, DeadLetters
from llmtwin.events.queue import Message

log = logging.getLogger(__name__)


class QueryGateway:
    def __init__(self, monitor: DriftMonitor, dead_letters: DeadLetters):
        self.monitor = monitor
        self.dead_letters = dead_letters

    def handle(self, messages: list[Message]) -> None:
        for message in messages:
            CONSUMED.labels(message.topic).inc()
            try:
                record = decode(message.value)
            except MalformedRecord as exc:
                self.dead_letters.send(message, exc.reason, exc.detail)
                continue
            if not self.monitor.add(record):
                self.dead_letters.send(message, "unknown-twin", f"no LLMTwin {record.namespace}/{record.twin}")
        self.dead_letters.flush()


def evaluate_every(monitor: DriftMonitor, seconds: float, stop: threading.Event) -> threading.Thread:
    """Score every twin every `seconds` (windows slide even when nobody asks), until `stop`."""

    def loop() -> None:
        while not stop.wait(seconds):
            try:
                monitor.evaluate()
            except Exception:  # a twin's store away for a moment: the next round tries again
                log.exception("drift evaluation failed")

    thread = threading.Thread(target=loop, name="drift-evaluate", daemon=True)
    thread.start()
    return thread
