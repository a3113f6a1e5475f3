"""kafka-python behind the gateway's `Consumer`/`Producer` interface (llmtwin.events.queue).

The consumer never auto-commits: the gateway commits after its submissions are durable. The
producer waits for all in-sync replicas (`acks=all`) so a dead-lettered message is stored before
the offset of the original moves past it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from llmtwin.events.queue import Message, Positions, new_assignment

log = logging.getLogger(__name__)


class KafkaMessageConsumer:
    def __init__(self, bootstrap: str, topic: str, group: str, client_id: str = "llmtwin-gateway"):
        self.assignment = 0  # drawn anew at every rebalance (`Message.assignment`)
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # A short fetch wait keeps latency low; bursts still arrive together in one poll.
            fetch_max_wait_ms=100,
            max_poll_interval_ms=600_000,  # a batch may wait on a slow API server with backoff
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
        )
        self.consumer.subscribe([topic], listener=_CountAssignments(self))

    def poll(self, timeout: float, max_records: int) -> list[Message]:
        records = self.consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        return [
            Message(
                topic=r.topic,
                value=r.value,
                key=r.key,
                headers={k: v for k, v in (r.headers or [])},
                partition=r.partition,
                offset=r.offset,
                timestamp=r.timestamp / 1000 if r.timestamp and r.timestamp > 0 else 0.0,
                assignment=self.assignment,
            )
            for batch in records.values()
            for r in batch
        ]

    def commit(self, positions: Positions | None = None) -> None:
        offsets = None
        if positions is not None:
            offsets = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in positions.items()}
        try:
            self.consumer.commit(offsets)
        except KafkaError as exc:
            # The batch is handled; a failed commit only means it may be replayed, and replays are
            # idempotent. The next successful commit covers these offsets.
            log.warning("offset commit failed (%s); later commits cover it", exc)

    def lag(self) -> dict[int, int]:
        """Messages behind the high-water mark per assigned partition; empty while the broker is unreachable."""
        lag = {}
        try:
            for tp in self.consumer.assignment():
                end = self.consumer.highwater(tp)
                if end is not None:
                    lag[tp.partition] = max(0, end - self.consumer.position(tp))
        except KafkaError as exc:
            log.debug("lag unknown: %s", exc)
        return lag

    def close(self) -> None:
        self.consumer.close(autocommit=False)


class _CountAssignments(ConsumerRebalanceListener):
    """Called inside `poll`, before it returns records of the new assignment."""

    def __init__(self, consumer: KafkaMessageConsumer):
        self.consumer = consumer

    def on_partitions_revoked(self, revoked) -> None:
        pass

    def on_partitions_assigned(self, assigned) -> None:
        self.consumer.assignment = new_assignment()


class KafkaMessageProducer:
    """`flush` raises any failed send since the last flush, so a caller knows what is durable. With
    `on_error`, sends are fire-and-forget instead (nothing is kept for a flush that never comes: the
    front door's question records); a failed send is handed to `on_error`."""

    def __init__(
        self, bootstrap: str, client_id: str = "llmtwin-gateway", on_error: Callable[[Exception], None] | None = None
    ):
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap, client_id=client_id, acks="all", retries=5, linger_ms=5
        )
        self.on_error = on_error
        self._pending = []
        self._lock = threading.Lock()  # one producer serves the consumers' threads and the webhook

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: dict[str, bytes] | None = None) -> None:
        future = self.producer.send(topic, value=value, key=key, headers=list((headers or {}).items()))
        if self.on_error is not None:
            future.add_errback(self.on_error)
            return
        with self._lock:
            self._pending.append(future)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        self.producer.flush()
        for future in pending:
            future.get(timeout=0)  # raises the send's KafkaError, if any

    def close(self) -> None:
        self.producer.close()
