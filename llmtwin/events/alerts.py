"""Alertmanager webhook payloads (version 4) and the CloudEvents they become on the alerts topic.

The webhook validates the payload against this schema, then publishes one CloudEvent per alert
(binary mode: `ce_*` headers, the alert as JSON data) keyed by the twin, so all alerts of one twin
land on one partition and are dispatched in order by one consumer. A Knative KafkaSource forwards
such records unchanged as HTTP CloudEvents.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmtwin.api.names import ALERT_ACTION_LABEL, ALERT_NAMESPACE_LABEL, ALERT_TWIN_LABEL
from llmtwin.events.records import MalformedEvent

ALERT_EVENT_TYPE = "dev.llmtwin.alert"


class Alert(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(max_length=64)
    annotations: dict[str, str] = Field(default_factory=dict, max_length=64)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL", max_length=4096)
    fingerprint: str = Field(min_length=1, max_length=64)


class WebhookPayload(BaseModel):
    """Alertmanager's webhook body; we accept version "4" only (the current format)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = Field(max_length=256)
    group_key: str = Field(default="", alias="groupKey", max_length=4096)
    alerts: list[Alert] = Field(min_length=1, max_length=1000)


@dataclass(frozen=True)
class AlertEvent:
    """One alert as the dispatcher sees it."""

    status: str
    twin_namespace: str
    twin_name: str
    action: str
    fingerprint: str
    starts_at: str
    summary: str

    def episode(self) -> str:
        """One firing of one alert: what a retrain run is recorded against."""
        return f"{self.fingerprint}@{self.starts_at}"

    def dedupe_key(self) -> str:
        """One alert episode (fingerprint + start) triggers at most one run, however often it repeats."""
        return f"{self.twin_namespace}/{self.twin_name}/retrain/{self.fingerprint}/{self.starts_at}"


def partition_key(alert: Alert) -> str:
    return f"{alert.labels.get(ALERT_NAMESPACE_LABEL, '')}/{alert.labels.get(ALERT_TWIN_LABEL, '')}"


def alert_cloudevent(alert: Alert, receiver: str) -> CloudEvent:
    starts = alert.starts_at.isoformat()
    return CloudEvent(
        attributes={
            "type": ALERT_EVENT_TYPE,
            "source": f"alertmanager/{receiver}",
            # Alertmanager repeats a firing alert; the same state gets the same id.
            "id": hashlib.sha1(f"{alert.fingerprint}/{starts}/{alert.status}".encode()).hexdigest(),
            "subject": partition_key(alert),
            "datacontenttype": "application/json",
        },
        data=alert.model_dump(mode="json", by_alias=True),
    )


def alert_kafka_record(alert: Alert, receiver: str) -> ce_kafka.KafkaMessage:
    return ce_kafka.to_binary_event(alert_cloudevent(alert, receiver), key_mapper=lambda _: partition_key(alert))


def alert_from_cloudevent(event: CloudEvent) -> AlertEvent:
    if event.get_type() != ALERT_EVENT_TYPE:
        raise MalformedEvent(f"unexpected CloudEvent type {str(event.get_type())[:100]!r}")
    data: Any = event.get_data()
    try:
        alert = Alert.model_validate_json(data) if isinstance(data, (bytes, str)) else Alert.model_validate(data)
    except ValidationError as exc:
        raise MalformedEvent(f"alert does not validate: {str(exc)[:300]}") from exc
    return AlertEvent(
        status=alert.status,
        twin_namespace=alert.labels.get(ALERT_NAMESPACE_LABEL, ""),
        twin_name=alert.labels.get(ALERT_TWIN_LABEL, ""),
        action=alert.labels.get(ALERT_ACTION_LABEL, ""),
        fingerprint=alert.fingerprint,
        starts_at=alert.starts_at.isoformat(),
        summary=alert.annotations.get("summary", alert.labels.get("alertname", ""))[:200],
    )


def parse_alert_record(value: bytes | None, headers: dict[str, bytes], key: bytes | None) -> AlertEvent:
    """An alert from a Kafka record of the alerts topic (binary-mode CloudEvent)."""
    try:
        event = ce_kafka.from_kafka(ce_kafka.KafkaMessage(headers=headers, key=key, value=value or b""), JSONFormat())
    except Exception as exc:  # the SDK raises several types for bad input; all mean "not our event"
        raise MalformedEvent(f"not a CloudEvent: {str(exc)[:200]}") from exc
    return alert_from_cloudevent(event)
