"""The gateway's HTTP side: the Alertmanager webhook, CloudEvents delivery (Knative), metrics, health.

- `POST /alertmanager`: bearer token from a Secret (401 without it), a body size limit (413),
  schema validation (422); each alert becomes a CloudEvent on the alerts topic. 200 only once Kafka
  has it, so Alertmanager retries anything we could not store.
- `POST /`: a CloudEvent as a Knative KafkaSource delivers it (binary or structured mode). Kafka
  records from the objects topic arrive wrapped (`dev.knative.kafka.event`, the record value as
  data); alert records arrive as the CloudEvents they are. Either becomes a `Message` and goes to the
  same handler the Kafka consumers use; a 2xx means the submission is durable.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass

from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter, make_asgi_app
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from llmtwin.events.alerts import ALERT_EVENT_TYPE, WebhookPayload, alert_kafka_record
from llmtwin.events.queue import Message, Producer

WEBHOOK_REQUESTS = Counter("llmtwin_gateway_webhook_requests_total", "Alertmanager webhook requests", ["code"])
KNATIVE_KAFKA_EVENT = "dev.knative.kafka.event"


@dataclass(frozen=True)
class HttpConfig:
    token: str  # empty: the webhook refuses everything (fail closed)
    alerts_topic: str
    objects_topic: str
    max_body_bytes: int = 1024 * 1024


class BodyTooLarge(ValueError):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge()
    return bytes(body)


def _authorized(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())


def publish_alerts(producer: Producer, topic: str, payload: WebhookPayload) -> int:
    for alert in payload.alerts:
        record = alert_kafka_record(alert, payload.receiver)
        key = record.key.encode() if isinstance(record.key, str) else record.key
        producer.send(topic, record.value, key=key, headers=record.headers)
    producer.flush()
    return len(payload.alerts)


def message_from_cloudevent(event, config: HttpConfig) -> Message:
    """A delivered CloudEvent as the Kafka record it came from."""
    if event.get_type() == ALERT_EVENT_TYPE:
        record = ce_kafka.to_binary_event(event)
        return Message(config.alerts_topic, record.value, headers=record.headers)
    data = event.get_data()
    if isinstance(data, (dict, list)):
        value = json.dumps(data).encode()
    else:
        value = data.encode() if isinstance(data, str) else data
    topic = event.get_source().rpartition("#")[2] or config.objects_topic  # KafkaSource: ".../kafkasources/x#topic"
    key = event.get_extension("key")
    # No partition position: a delivery is its own batch (see ObjectGateway._may_repeat).
    return Message(topic, value, key=key.encode() if isinstance(key, str) else None, offset=-1)


def create_app(
    config: HttpConfig,
    producer: Producer | None,
    handlers: dict[str, Callable[[list[Message]], None]],
) -> FastAPI:
    """`producer` publishes webhook alerts (None: no webhook); `handlers` maps topic -> handler for CloudEvents."""
    app = FastAPI(title="llmtwin event gateway", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/metrics", make_asgi_app())

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/alertmanager")
    async def alertmanager(request: Request) -> JSONResponse:
        def reply(code: int, body: dict) -> JSONResponse:
            WEBHOOK_REQUESTS.labels(str(code)).inc()
            headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
            return JSONResponse(body, status_code=code, headers=headers)

        if not _authorized(request, config.token):
            return reply(401, {"error": "missing or wrong bearer token"})
        if producer is None:
            return reply(404, {"error": "webhook disabled"})
        try:
            body = await _read_body(request, config.max_body_bytes)
        except BodyTooLarge:
            return reply(413, {"error": f"body larger than {config.max_body_bytes} bytes"})
        try:
            payload = WebhookPayload.model_validate_json(body)
        except ValidationError as exc:
            return reply(422, {"error": "not an Alertmanager v4 webhook payload", "details": exc.errors()[:10]})
        try:
            published = await run_in_threadpool(publish_alerts, producer, config.alerts_topic, payload)
        except Exception as exc:  # Kafka unavailable: Alertmanager retries on 5xx
            return reply(503, {"error": f"could not publish: {exc}"})
        return reply(200, {"published": published})

    @app.post("/")
    async def cloudevent(request: Request) -> JSONResponse:
        try:
            body = await _read_body(request, config.max_body_bytes)
        except BodyTooLarge:
            return JSONResponse({"error": "body too large"}, status_code=413)
        try:
            event = ce_http.from_http(ce_http.HTTPMessage(dict(request.headers), body), JSONFormat())
        except Exception as exc:  # the SDK raises several types for bad input
            return JSONResponse({"error": f"not a CloudEvent: {exc}"}, status_code=400)
        message = message_from_cloudevent(event, config)
        handler = handlers.get(message.topic)
        if handler is None:
            return JSONResponse({"error": f"no handler for topic {message.topic!r}"}, status_code=404)
        await run_in_threadpool(handler, [message])
        return JSONResponse({"accepted": event.get_id()})

    return app
