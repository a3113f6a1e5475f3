"""The pure parts of the operator's event plane: Secret keys, notification ids and plans, bucket grouping."""

import base64

import pytest
from kubernetes.client import V1Secret
from kubernetes.client.exceptions import ApiException
from minio.notificationconfig import PrefixFilterRule, QueueConfig

from llmtwin.api.conditions import Reason
from llmtwin.api.v1alpha1 import LLMTwin, LLMTwinStatus, ObjectMeta, SecretKeyRef, SourceSpec
from llmtwin.operator.eventplane.plan import (
    buckets_of,
    config_id,
    desired_queue_config,
    dropped_buckets,
    kafka_target_arn,
    owned_by,
    planned_queue_configs,
    twin_config_prefix,
)
from llmtwin.secrets import KubernetesSecrets, SecretError, SecretFiles
from llmtwin.sources.credentials import secret_ref, source_credentials
from tests.twins import example_twin

ARN = "arn:minio:sqs::llmtwin:kafka"


def twin(name: str = "demo", namespace: str = "default", **spec) -> LLMTwin:
    return example_twin(**spec).model_copy(update={"metadata": ObjectMeta(name=name, namespace=namespace)})


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def test_the_arn_names_minios_kafka_target():
    assert kafka_target_arn("llmtwin") == ARN


def test_credentials_come_from_the_sources_secret_else_the_platform_one():
    assert secret_ref(SourceSpec(bucket="essays"), "platform-s3") == SecretKeyRef(
        name="platform-s3", access_key_key="accessKey", secret_key_key="secretKey"
    )
    own = SecretKeyRef(name="mine", access_key_key="id", secret_key_key="key")
    assert secret_ref(SourceSpec(bucket="essays", credentials_secret_ref=own), "platform-s3") is own


class SecretsApi:
    """CoreV1Api's read_namespaced_secret over a dict of namespaces (the calls are counted)."""

    def __init__(self, secrets: dict[tuple[str, str], dict[str, str]]):
        self.secrets, self.reads = secrets, 0

    def read_namespaced_secret(self, name, namespace):
        self.reads += 1
        if (namespace, name) not in self.secrets:
            raise ApiException(status=404)
        return V1Secret(data=self.secrets[namespace, name])


def test_secret_data_is_read_by_name_in_the_twins_namespace_once_and_decoded_with_the_refs_key_names():
    api = SecretsApi({("team-a", "mine"): {"id": b64("AKIA"), "key": b64("s3cr3t")}})
    ref = SecretKeyRef(name="mine", access_key_key="id", secret_key_key="key")
    credentials = source_credentials(KubernetesSecrets(api, "team-a"), ref)
    assert (credentials.access_key, credentials.secret_key) == ("AKIA", "s3cr3t")
    assert "s3cr3t" not in repr(credentials)
    assert api.reads == 1  # both keys from one read
    with pytest.raises(SecretError) as elsewhere:  # another namespace's Secret of that name is not this twin's
        source_credentials(KubernetesSecrets(api, "team-b"), ref)
    assert elsewhere.value.reason == Reason.SECRET_MISSING and "team-b/mine" in elsewhere.value.detail


def test_mounted_secret_files_are_read_with_the_refs_key_names(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "id").write_text("AKIA\n")
    (tmp_path / "mine" / "key").write_text("s3cr3t")
    files = SecretFiles(tmp_path)
    credentials = source_credentials(files, SecretKeyRef(name="mine", access_key_key="id", secret_key_key="key"))
    assert (credentials.access_key, credentials.secret_key) == ("AKIA", "s3cr3t")
    with pytest.raises(SecretError) as missing:
        source_credentials(files, SecretKeyRef(name="absent"))
    assert missing.value.reason == Reason.SECRET_MISSING
    with pytest.raises(SecretError) as invalid:
        source_credentials(files, SecretKeyRef(name="mine"))  # default key names: accessKey, secretKey
    assert invalid.value.reason == Reason.SECRET_INVALID and "accessKey" in invalid.value.detail


def test_a_secret_without_a_key_names_the_key_and_never_a_value():
    api = SecretsApi({("default", "platform-s3"): {"accessKey": b64("AKIA")}})
    with pytest.raises(SecretError) as raised:
        source_credentials(KubernetesSecrets(api, "default"), SecretKeyRef(name="platform-s3"))
    assert raised.value.reason == Reason.SECRET_INVALID
    assert "platform-s3" in str(raised.value) and "secretKey" in str(raised.value)
    assert "AKIA" not in str(raised.value)


def test_queue_config_carries_both_event_kinds_and_only_the_filters_set():
    config = desired_queue_config(SourceSpec(bucket="essays", prefix="notes/"), ARN)
    assert config.queue == ARN and config.events == ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
    assert config.prefix_filter_rule.value == "notes/" and config.suffix_filter_rule is None
    assert desired_queue_config(SourceSpec(bucket="essays"), ARN).prefix_filter_rule is None


def test_config_ids_are_stable_and_unique_per_twin_and_filter():
    alpha, alpha_b = twin("a"), twin("a-b")
    source = SourceSpec(bucket="essays", prefix="notes/")
    ids = {
        config_id(source, twin_config_prefix(alpha)),
        config_id(SourceSpec(bucket="essays", prefix="drafts/"), twin_config_prefix(alpha)),
        config_id(source, twin_config_prefix(alpha_b)),
        config_id(source, twin_config_prefix(twin("a", namespace="other"))),
        config_id(source),
    }
    assert len(ids) == 5
    assert config_id(source, twin_config_prefix(alpha)) == config_id(
        SourceSpec(bucket="essays", prefix="notes/"), twin_config_prefix(alpha)
    )
    # Twin `a` claims its own configs, never twin `a-b`'s nor one set without a twin.
    assert owned_by(alpha)(config_id(source, twin_config_prefix(alpha)))
    assert not owned_by(alpha)(config_id(source, twin_config_prefix(alpha_b)))
    assert not owned_by(alpha)(config_id(source))
    assert all(i.startswith("llmtwin-") for i in ids)


def test_a_matching_bucket_config_plans_no_write():
    owner = twin()
    wanted = [desired_queue_config(SourceSpec(bucket="essays", prefix="notes/"), ARN, twin_config_prefix(owner))]
    # As MinIO returns it: the same config with its events in another order.
    live = QueueConfig(
        queue=ARN,
        events=["s3:ObjectRemoved:*", "s3:ObjectCreated:*"],
        config_id=wanted[0].config_id,
        prefix_filter_rule=PrefixFilterRule("notes/"),
    )
    assert planned_queue_configs([live], wanted, owned_by(owner)) is None


def test_a_changed_prefix_replaces_the_twins_config_and_keeps_everyone_elses():
    owner, neighbour = twin("demo"), twin("neighbour")
    old = desired_queue_config(SourceSpec(bucket="essays", prefix="notes/"), ARN, twin_config_prefix(owner))
    theirs = desired_queue_config(SourceSpec(bucket="essays"), ARN, twin_config_prefix(neighbour))
    foreign = QueueConfig(queue=ARN, events=["s3:ObjectCreated:*"], config_id="audit")
    new = desired_queue_config(SourceSpec(bucket="essays", prefix="essays/"), ARN, twin_config_prefix(owner))
    assert planned_queue_configs([old, theirs, foreign], [new], owned_by(owner)) == [theirs, foreign, new]


def test_removing_a_twins_configs_keeps_the_rest_or_leaves_nothing():
    owner = twin()
    mine = desired_queue_config(SourceSpec(bucket="essays"), ARN, twin_config_prefix(owner))
    foreign = QueueConfig(queue=ARN, events=["s3:ObjectCreated:*"], config_id="audit")
    assert planned_queue_configs([mine, foreign], [], owned_by(owner)) == [foreign]
    assert planned_queue_configs([mine], [], owned_by(owner)) == []
    assert planned_queue_configs([foreign], [], owned_by(owner)) is None


def test_sources_are_grouped_per_endpoint_and_bucket():
    sources = [
        {"bucket": "essays", "prefix": "notes/"},
        {"bucket": "essays", "prefix": "drafts/"},
        {"bucket": "essays", "endpoint": "https://s3.example", "credentialsSecretRef": {"name": "ext"}},
        {"bucket": "letters"},
    ]
    groups = buckets_of(twin(sources=sources), "http://minio:9000")
    assert {key: [s.prefix for s in group] for key, group in groups.items()} == {
        ("http://minio:9000", "essays"): ["notes/", "drafts/"],
        ("https://s3.example", "essays"): [""],
        ("http://minio:9000", "letters"): [""],
    }


def test_buckets_dropped_from_the_spec_are_found_where_they_were_wired():
    wired = [
        {"bucket": "essays", "endpoint": "http://minio:9000", "credentialsSecretRef": {"name": "platform-s3"}},
        {"bucket": "letters", "endpoint": "https://s3.example", "credentialsSecretRef": {"name": "ext"}},
        {"bucket": "essays", "endpoint": "https://s3.example", "credentialsSecretRef": {"name": "ext"}},
    ]
    current = twin(sources=[{"bucket": "essays"}]).model_copy(
        update={"status": LLMTwinStatus(buckets=[{**b, "state": "Notifying"} for b in wired])}
    )
    dropped = dropped_buckets(current, "http://minio:9000")
    assert list(dropped) == [("https://s3.example", "letters"), ("https://s3.example", "essays")]
    (letters,) = dropped["https://s3.example", "letters"]
    assert (letters.bucket, letters.endpoint) == ("letters", "https://s3.example")
    assert secret_ref(letters, "platform-s3").name == "ext"  # the Secret it was wired with, not the platform one


def test_status_buckets_written_as_strings_by_earlier_builds_are_ignored():
    status = LLMTwinStatus.model_validate({"buckets": ["essays: Notifying"]})
    assert status.buckets == []
