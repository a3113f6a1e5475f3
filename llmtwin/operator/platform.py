"""What every handler of the operator shares: settings, API clients, the topic keeper, metrics.

Built once at start-up (`connect`) and kept in kopf's memo.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes.client import CoreV1Api
from prometheus_client import start_http_server

from llmtwin.config import OperatorSettings
from llmtwin.kube import api_client
from llmtwin.operator.apply import FIELD_MANAGER, Applier
from llmtwin.operator.eventplane.topics import TopicKeeper, event_topics


@dataclass
class Platform:
    settings: OperatorSettings
    applier: Applier  # the twins' children
    core: CoreV1Api  # Secrets, by name
    topics: TopicKeeper


def connect(settings: OperatorSettings) -> Platform:
    client = api_client(settings.kubeconfig, pool_size=settings.max_workers)
    topics = TopicKeeper(settings.kafka_bootstrap, event_topics(settings), settings.topic_partitions)
    topics.start()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_addr)
    return Platform(settings, Applier(client, field_manager=FIELD_MANAGER), CoreV1Api(client), topics)
