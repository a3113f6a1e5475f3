"""`llmtwin up`'s drift chain, whole: questions through the real front door (retrieval + recording) ->
the in-process queries topic -> the drift monitor with the real embedder -> the twin's rule -> the
alert on the alerts topic -> the dispatcher deciding from the status file -> a real local retrain of
the tiny model -> its end in the status file. Then repeats of the alert start nothing."""

from __future__ import annotations

import time

import pytest

from llmtwin.config import EmbeddedSettings, load
from llmtwin.embedded.twin import EmbeddedTwin, local_settings
from llmtwin.frontdoor.answer import FrontDoor, Recorder
from llmtwin.frontdoor.retrieve import Retriever

pytestmark = pytest.mark.slow

ON_TOPIC = [
    "What does the gull at the harbour wall wait for?",
    "Why does the ferry at Port Ellery argue with the tide?",
    "Who owns the bell at the chapel steps?",
    "What does the lamp at the lighthouse remember?",
    "Does the kettle at the fish market keep time?",
    "What did the net at the quay say when you asked it?",
    "Why do the boats at Port Ellery pretend not to notice?",
    "What is the wind at dusk like, by the harbour wall?",
    "Does the dog at the quay forgive anything?",
    "What does the rope at the fish market complain about?",
]
OFF_TOPIC = [
    "How do I configure a Kubernetes horizontal pod autoscaler on CPU?",
    "What is the difference between a Python list and a tuple?",
    "How should I file my quarterly VAT return as a freelancer?",
    "Which SQL index speeds up a range query on timestamps?",
    "How do I rotate TLS certificates in an nginx ingress controller?",
    "What is the time complexity of quicksort in the worst case?",
    "How do I compute gradient descent for logistic regression?",
    "Which Rust trait lets me iterate over a custom collection?",
    "How do I set up a Kafka consumer group with manual commits?",
    "What interest rate makes a mortgage refinance worth it?",
]


def ask_all(door: FrontDoor, questions: list[str]) -> None:
    for question in questions:
        door.ask(question, generate=False)  # retrieval and recording: what every answer does


def take_questions(drift) -> None:
    drift.queries.handle(drift.queries_consumer.poll(0, 1000))
    drift.queries_consumer.commit()


class Clock:
    """The chain's one clock (records, window, rule, dispatcher), moved by the test: what is asserted is
    the window and `for` logic, not how fast a loaded machine embeds ten questions."""

    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_off_topic_questions_start_exactly_one_local_retrain(twin, tmp_path):
    twin = twin.model_copy(deep=True)
    twin.spec.drift = twin.spec.drift.model_copy(
        update={"window": "4s", "for_": "1s", "min_questions": 8, "detector": "embedding-centroid"}
    )
    twin.spec.training = twin.spec.training.model_copy(update={"max_steps": 4})
    settings = local_settings(tmp_path, load(EmbeddedSettings), twin)
    embedded = EmbeddedTwin(twin, tmp_path, settings)
    results: list[dict] = []
    embedded.on_result = results.append
    clock = Clock()
    drift = embedded.drift(clock)
    recorder = Recorder(twin, embedded.queue, settings.queries_topic, clock)
    door = FrontDoor(twin, Retriever(twin), None, recorder)

    ask_all(door, ON_TOPIC)
    take_questions(drift)
    for _ in range(2):  # on topic, for longer than `for`: nothing fires
        assert drift.evaluate() is None
        clock.now += 1.1
    on_topic = drift.last
    assert on_topic.questions == len(ON_TOPIC)
    assert on_topic.score is not None and on_topic.score < twin.spec.drift.effective_threshold

    clock.now += 4.1  # the on-topic questions leave the window
    ask_all(door, OFF_TOPIC)
    take_questions(drift)
    assert drift.evaluate() is None  # pending: drift must hold for `for`
    assert drift.last.score > twin.spec.drift.effective_threshold, (on_topic, drift.last)
    clock.now += 1.1
    alert = drift.evaluate()
    assert alert is not None and alert["status"] == "firing"

    drift.dispatcher.handle(drift.alerts_consumer.poll(0, 10))  # runs the retrain here, to its end
    drift.alerts_consumer.commit()
    assert [r["outcome"] for r in results] in (["retrain-promoted"], ["retrain-rejected"]), results
    last = embedded.status.read()["lastTraining"]
    assert last["episode"].startswith(alert["fingerprint"]) and last["result"] == "Succeeded"
    assert last["finishedAt"] and last["version"]

    clock.now += 4.1  # the off-topic questions leave the window too: the alert resolves
    resolved = drift.evaluate()
    assert resolved is not None and resolved["status"] == "resolved"
    # A replay of the firing alert (Alertmanager repeats, a redelivery) is the same episode: nothing starts.
    firing = drift.queue.messages(settings.alerts_topic)[0]
    drift.queue.send(settings.alerts_topic, firing.value, firing.key, firing.headers)
    drift.dispatcher.handle(drift.alerts_consumer.poll(0, 10))
    assert len(results) == 1 and embedded.status.read()["lastTraining"] == last
