"""The consume/commit interface the gateway runs on, and its in-process implementation.

Kafka (`llmtwin.events.broker`) and `InProcessQueue` (embedded mode, `llmtwin up`) both provide it,
so the gateway's logic exists once. Semantics follow Kafka's: `poll` returns the next messages after
the consumer's position, `commit` makes the position durable; what was polled but not committed is
delivered again to the next consumer of the group.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Message:
    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: dict[str, bytes] = field(default_factory=dict)
    partition: int = 0
    offset: int = 0
    timestamp: float = 0.0  # unix seconds when the broker accepted it
    # The partition assignment of the consumer that polled it (`new_assignment`); 0: no consumer (HTTP).
    assignment: int = 0


_ASSIGNMENTS = itertools.count(1)


def new_assignment() -> int:
    """A number no other assignment in this process has: consumers draw one each time their partitions are
    (re)assigned, so a handler can tell that partitions may have been someone else's in between."""
    return next(_ASSIGNMENTS)


Positions = dict[tuple[str, int], int]  # (topic, partition) -> the offset to read next


def next_positions(messages: list[Message]) -> Positions:
    """Where a consumer resumes after these messages (what committing them records)."""
    positions: Positions = {}
    for message in messages:
        if message.offset >= 0:  # an HTTP CloudEvent has no position
            position = (message.topic, message.partition)
            positions[position] = max(positions.get(position, 0), message.offset + 1)
    return positions


class Consumer(Protocol):
    def poll(self, timeout: float, max_records: int) -> list[Message]: ...
    def commit(self, positions: Positions | None = None) -> None:
        """Make `positions` durable for the group; None: everything polled so far."""

    def lag(self) -> dict[int, int]: ...  # partition -> messages behind the end
    def close(self) -> None: ...


class Producer(Protocol):
    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: dict[str, bytes] | None = None) -> None:
        """Queue a message; `flush` makes it durable."""

    def flush(self) -> None:
        """Block until every message sent so far is durable; raise if any of them failed."""


class InProcessQueue:
    """Topics as in-memory logs with per-group committed offsets (one partition each)."""

    def __init__(self) -> None:
        self._logs: dict[str, list[Message]] = defaultdict(list)
        self._committed: dict[tuple[str, str], int] = defaultdict(int)
        self._changed = threading.Condition()

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: dict[str, bytes] | None = None) -> None:
        with self._changed:
            log = self._logs[topic]
            log.append(Message(topic, value, key, dict(headers or {}), 0, len(log), time.time()))
            self._changed.notify_all()

    def flush(self) -> None:
        """Appends are durable for the life of the process (that is all embedded mode promises)."""

    def messages(self, topic: str) -> list[Message]:
        with self._changed:
            return list(self._logs[topic])

    def consumer(self, topic: str, group: str) -> InProcessConsumer:
        return InProcessConsumer(self, topic, group)


class InProcessConsumer:
    def __init__(self, queue: InProcessQueue, topic: str, group: str):
        self.queue = queue
        self.topic = topic
        self.group = group
        with queue._changed:
            self.position = queue._committed[(group, topic)]
        self.assignment = new_assignment()  # one partition, assigned for the consumer's life

    def poll(self, timeout: float, max_records: int) -> list[Message]:
        with self.queue._changed:
            log = self.queue._logs[self.topic]
            if self.position >= len(log):
                self.queue._changed.wait(timeout)
            batch = log[self.position : self.position + max_records]
            self.position += len(batch)
        return [dataclasses.replace(message, assignment=self.assignment) for message in batch]

    def commit(self, positions: Positions | None = None) -> None:
        with self.queue._changed:
            position = self.position if positions is None else positions.get((self.topic, 0))
            if position is not None:
                self.queue._committed[(self.group, self.topic)] = position

    def lag(self) -> dict[int, int]:
        with self.queue._changed:
            return {0: len(self.queue._logs[self.topic]) - self.position}

    def close(self) -> None:
        pass
