"""The event topics (objects, alerts, dead letters): ensured once when the operator starts.

They are platform-wide, not per twin, so no reconcile opens a Kafka admin client. If Kafka does not
answer at start-up, a background thread keeps trying with backoff; until it succeeds every twin's
StorageReady says KafkaUnavailable (and the resync picks the success up).
"""

from __future__ import annotations

import logging
import threading

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from llmtwin.api.conditions import Reason
from llmtwin.config import PlatformSettings
from llmtwin.operator.apply import API_WRITES
from llmtwin.operator.status import Failure

log = logging.getLogger(__name__)
KAFKA_TIMEOUT_MS = 5000


def event_topics(settings: PlatformSettings) -> list[str]:
    return [settings.objects_topic, settings.alerts_topic, settings.dlq_topic, settings.queries_topic]


def ensure_topics(bootstrap: str, topics: list[str], partitions: int = 3, replication: int = -1) -> list[str]:
    """Create the missing topics (replication -1: the broker's default); returns the ones created."""
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="llmtwin-operator",
        bootstrap_timeout_ms=KAFKA_TIMEOUT_MS,
        request_timeout_ms=KAFKA_TIMEOUT_MS,
    )
    try:
        missing = [t for t in topics if t not in set(admin.list_topics())]
        if not missing:
            return []
        try:
            admin.create_topics([NewTopic(t, partitions, replication) for t in missing])
        except TopicAlreadyExistsError:
            pass  # created concurrently (another replica, or MinIO's auto-create): converged anyway
        API_WRITES.labels("KafkaTopic", "create").inc(len(missing))
        return missing
    finally:
        admin.close()


class TopicKeeper:
    """Ensures the topics once; `failure()` is what StorageReady reports until that succeeded."""

    def __init__(self, bootstrap: str, topics: list[str], partitions: int, max_delay: float = 30.0):
        self.bootstrap = bootstrap
        self.topics = topics
        self.partitions = partitions
        self.max_delay = max_delay
        self._error: str | None = None if not bootstrap else "not ensured yet"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Try now (a healthy platform is wired before the first reconcile), else keep trying in the background."""
        if not self.bootstrap or self._attempt():
            return
        self._thread = threading.Thread(target=self._retry, name="ensure-topics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def failure(self) -> Failure | None:
        error = self._error
        return Failure(Reason.KAFKA_UNAVAILABLE, f"Kafka {self.bootstrap}: {error}") if error else None

    def _attempt(self) -> bool:
        try:
            created = ensure_topics(self.bootstrap, self.topics, self.partitions)
        except (KafkaError, OSError) as exc:
            self._error = str(exc) or type(exc).__name__
            log.warning("Kafka %s: cannot ensure topics %s: %s", self.bootstrap, self.topics, self._error)
            return False
        if created:
            log.info("created topics %s", created)
        self._error = None
        return True

    def _retry(self) -> None:
        delay = 1.0
        while not self._stop.wait(delay) and not self._attempt():
            delay = min(self.max_delay, delay * 2)
