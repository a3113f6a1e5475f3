"""A twin whose Milvus demands TLS and a token (spec.vectorStore.tokenSecretRef and tls): the values come from
its Secret as a pod mounts it, and reach the client of every process that opens the collection. The server
is Milvus Lite behind tests/harness/milvus_gate.py, the stand-in for Milvus' own TLS and authentication."""

from __future__ import annotations

import pytest
from pymilvus import MilvusException

from llmtwin.api.conditions import Reason
from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.config import EmbeddedSettings
from llmtwin.corpus.store import MilvusAccess, milvus_access, milvus_client, store_for
from llmtwin.embedded.twin import step_context
from llmtwin.frontdoor.retrieve import Retriever
from llmtwin.secrets import SecretError, SecretFiles
from llmtwin.sources.changes import ObjectChange, encode_changes
from llmtwin.workflows.status import FileStatusReporter
from llmtwin.workflows.steps import run_step
from llmtwin.workflows.templates import INGEST_STEP
from tests.harness.milvus_gate import TOKEN, mount_secret, secured_vector_store
from tests.ingest.conftest import drop
from tests.twins import twin_doc

pytestmark = [pytest.mark.milvus, pytest.mark.slow]
NOTE = "# The lighthouse keeper\n\nThe keeper climbed the hundred and twelve steps at dusk to light the lamp."


def secured_twin(gate, name: str) -> LLMTwin:
    doc = twin_doc(name=name)
    doc["spec"]["vectorStore"] = secured_vector_store(gate)
    return LLMTwin.model_validate(doc)


def test_the_ingest_step_and_the_front_door_reach_milvus_with_the_token_and_ca_from_the_mounted_secret(
    milvus_gate, embedder, tmp_path
):
    twin = secured_twin(milvus_gate, "keeper")
    secrets = mount_secret(tmp_path / "secrets", milvus_gate)
    (tmp_path / "inbox" / "essays").mkdir(parents=True)
    drop(tmp_path / "inbox", "keeper.md", NOTE)
    refused = milvus_gate.refused

    context = step_context(twin, tmp_path, EmbeddedSettings(), FileStatusReporter(tmp_path / "status.json"), secrets)
    objects = encode_changes([ObjectChange("essays", "keeper.md")])
    outputs = run_step(INGEST_STEP, {"twin": twin.name, "objects": objects}, context)
    assert [o["outcome"] for o in outputs["objects"]] == ["ingested"]

    hits = Retriever(twin, store_for(twin, SecretFiles(secrets)), embedder).retrieve("How many steps to the lamp?")
    assert hits and hits[0].key == "keeper.md"
    assert milvus_gate.refused == refused  # every call carried the token


def test_without_the_secret_the_twin_says_which_secret_and_key_it_needs(milvus_gate, tmp_path):
    twin = secured_twin(milvus_gate, "nosecret")
    with pytest.raises(SecretError) as missing:
        milvus_access(twin, SecretFiles(tmp_path))
    assert missing.value.reason == Reason.SECRET_MISSING and "milvus-access" in missing.value.detail
    (tmp_path / "milvus-access").mkdir()
    (tmp_path / "milvus-access" / "token").write_text(TOKEN)
    with pytest.raises(SecretError) as invalid:
        milvus_access(twin, SecretFiles(tmp_path))
    assert invalid.value.reason == Reason.SECRET_INVALID and "ca.crt" in invalid.value.detail


def test_a_wrong_token_is_refused_and_tls_needs_both_the_ca_and_the_server_name(milvus_gate, tmp_path):
    good = milvus_access(secured_twin(milvus_gate, "checks"), SecretFiles(mount_secret(tmp_path, milvus_gate)))
    milvus_client(good).list_collections()  # the options as the spec gives them: in

    refused = milvus_gate.refused
    with pytest.raises(MilvusException):
        milvus_client(MilvusAccess(**{**vars(good), "token": "twin-reader:wrong"})).list_collections()
    assert milvus_gate.refused > refused  # the gate saw the call and refused it: it was the token
    # Without the CA the system's roots cannot vouch for the certificate; without the server name the uri's
    # host (an IP) is not the name the certificate carries. Either way nothing reaches the gate's handler.
    forwarded = milvus_gate.forwarded
    for missing in ({"ca_pem": ""}, {"server_name": ""}):
        with pytest.raises(MilvusException):
            milvus_client(MilvusAccess(**{**vars(good), **missing})).list_collections()
    assert milvus_gate.forwarded == forwarded
