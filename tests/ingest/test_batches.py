"""A flood of new objects through the gateway's batching and the real `ingest-objects` step: ceil(n / batch)
Workflows, every object ingested exactly once (real embedding model, Milvus Lite), a replay creates nothing."""

import math

import pytest

from llmtwin.config import EmbeddedSettings
from llmtwin.corpus.store import store_for
from llmtwin.embedded.twin import step_context
from llmtwin.events.gateway import DeadLetters, ObjectGateway
from llmtwin.events.queue import InProcessQueue
from llmtwin.events.records import minio_message
from llmtwin.events.routing import StaticTwins
from llmtwin.events.submit import LocalSubmitter
from llmtwin.workflows.runner import LocalRunner
from llmtwin.workflows.status import FileStatusReporter
from llmtwin.workflows.templates import INGEST_STEP
from tests.ingest.conftest import drop, make_twin

pytestmark = pytest.mark.slow
OBJECTS = 1000
BATCH = 100


def test_a_flood_is_ingested_once_per_object_in_batches_and_a_replay_creates_nothing(tmp_path, inbox, embedder):
    twin = make_twin(tmp_path / "milvus.db", ingest={"batchSize": BATCH})
    keys = [f"flood/{i:04d}.md" for i in range(OBJECTS)]
    queue = InProcessQueue()
    for i, key in enumerate(keys):
        drop(inbox, key, f"# Note {i}\n\nThe harbour bell rang {i} times before the ferry left.")
        queue.send("objects", minio_message("essays", key, "put", f"etag-{i}", sequencer=f"{i + 1:016X}"))
    messages = queue.consumer("objects", "gateway").poll(0, 10 * OBJECTS)

    settings = EmbeddedSettings()
    context = step_context(twin, tmp_path, settings, FileStatusReporter(tmp_path / "status.json"))
    runs = []
    submitter = LocalSubmitter(
        {(twin.namespace, twin.name): LocalRunner(context, tmp_path / "workspaces")},
        on_result=lambda workflow, outcome: runs.append(outcome),
    )

    def gateway() -> ObjectGateway:  # a fresh one: as after a restart
        return ObjectGateway(StaticTwins([twin]), submitter, DeadLetters(queue, "dlq"), workers=1)

    gateway().handle(messages)
    assert len(runs) == math.ceil(OBJECTS / BATCH)
    outcomes = [o for run in runs for o in run.outputs[INGEST_STEP]["objects"]]
    assert sorted(o["key"] for o in outcomes) == keys  # each object in exactly one Workflow
    assert {o["outcome"] for o in outcomes} == {"ingested"}
    assert store_for(twin).counts() == (OBJECTS, OBJECTS)

    gateway().handle(messages)  # the same batch replayed after a restart
    assert len(runs) == math.ceil(OBJECTS / BATCH) and store_for(twin).counts() == (OBJECTS, OBJECTS)
