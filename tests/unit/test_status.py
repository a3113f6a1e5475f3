"""The operator's status decision, without a cluster: observation in, status patch and Events out."""

from llmtwin.api.conditions import ConditionType, Phase, Reason, find_condition
from llmtwin.operator.status import Event, Failure, Observation, decide

WIRED: list[Failure] = []


def clock():
    return "2026-12-01T00:00:00Z"


def condition(update, type_: str) -> dict:
    return find_condition(update.status["conditions"], type_)


def test_a_wired_twin_is_ready_and_says_so_once():
    first = decide(Observation(generation=2, storage=WIRED, storage_message="essays: Notifying"), {}, clock)
    assert first.phase == Phase.READY
    assert condition(first, ConditionType.READY)["status"] == "True"
    assert condition(first, ConditionType.STORAGE_READY)["message"] == "essays: Notifying"
    assert condition(first, ConditionType.DEGRADED)["status"] == "False"
    assert first.status["observedGeneration"] == 2 and first.status["phase"] == "Ready"
    assert first.events == [Event("Normal", Reason.RECONCILED, "all children applied, event plane wired")]
    # The same observation against the status it produced: nothing to write, nothing to announce.
    again = decide(Observation(generation=2, storage=WIRED, storage_message="essays: Notifying"), first.status, clock)
    assert again.status == {} and again.events == []


def test_storage_that_may_heal_leaves_the_twin_pending_not_degraded():
    kafka = Failure(Reason.KAFKA_UNAVAILABLE, "Kafka k:9092: timed out")
    update = decide(Observation(generation=1, storage=[kafka]), {}, clock)
    assert update.phase == Phase.PENDING
    assert condition(update, ConditionType.STORAGE_READY)["reason"] == "KafkaUnavailable"
    assert condition(update, ConditionType.READY)["reason"] == "StorageNotReady"
    assert condition(update, ConditionType.DEGRADED)["status"] == "False"
    assert update.events == []


def test_a_missing_secret_degrades_the_twin_with_the_storage_reason():
    secret = Failure(Reason.SECRET_MISSING, "Secret default/s3 not found (credentialsSecretRef of bucket 'essays')")
    update = decide(Observation(generation=1, storage=[secret]), {}, clock)
    assert update.phase == Phase.DEGRADED
    degraded = condition(update, ConditionType.DEGRADED)
    assert (degraded["status"], degraded["reason"]) == ("True", "SecretMissing")
    assert "credentialsSecretRef" in degraded["message"]
    assert update.events == [Event("Warning", "SecretMissing", secret.message)]


def test_a_degraded_twin_resynced_with_the_same_problem_posts_no_new_event():
    spec = Observation(generation=4, problems=[Failure(Reason.SPEC_INVALID, "spec.sources[1]: listed twice")])
    first = decide(spec, {}, clock)
    assert first.phase == Phase.DEGRADED and len(first.events) == 1
    resync = decide(spec, first.status, clock)
    assert resync.events == [] and resync.status == {}
    # A different problem is news again.
    other = Observation(generation=5, problems=[Failure(Reason.APPLY_FAILED, "Rollout/x: 422 Invalid")])
    changed = decide(other, first.status, clock)
    assert changed.events == [Event("Warning", "ApplyFailed", "Rollout/x: 422 Invalid")]
    # An invalid spec was never wired: StorageReady is not touched.
    assert condition(first, ConditionType.STORAGE_READY) is None


def test_recovery_keeps_transition_times_of_unchanged_conditions():
    degraded = decide(Observation(generation=1, problems=[Failure(Reason.SPEC_INVALID, "x")]), {}, lambda: "t1")
    recovered = decide(Observation(generation=2, storage=WIRED), degraded.status, lambda: "t2")
    assert condition(recovered, ConditionType.DEGRADED)["lastTransitionTime"] == "t2"
    assert condition(recovered, ConditionType.READY)["lastTransitionTime"] == "t2"
    assert recovered.phase == Phase.READY and [e.type for e in recovered.events] == ["Normal"]
    pending = decide(
        Observation(generation=2, storage=[Failure(Reason.STORAGE_UNAVAILABLE, "down")]),
        {**degraded.status, **recovered.status},
        lambda: "t3",
    )
    assert condition(pending, ConditionType.DEGRADED)["lastTransitionTime"] == "t2"  # still False since t2


def test_fields_are_written_only_when_they_differ():
    observed = Observation(
        generation=1, storage=WIRED, fields={"children": ["ConfigMap/demo-config"], "collection": "c"}
    )
    first = decide(observed, {}, clock)
    assert first.status["children"] == ["ConfigMap/demo-config"]
    live = {**first.status}
    edited = Observation(generation=1, storage=WIRED, fields={"children": ["ConfigMap/demo-config"], "collection": "d"})
    assert set(decide(edited, live, clock).status) == {"collection"}
