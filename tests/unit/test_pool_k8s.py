"""The Kubernetes manifests point every query-api pod's vLLM pool at the headless vLLM Service."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from services.common.llm_pool import discovery_from
from services.common.settings import LLMSettings
from tests.unit import test_k8s_manifests as manifests


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_query_api_discovers_vllm_pods_through_the_headless_service(overlay: str) -> None:
    objs = manifests.objects(overlay)
    service = manifests.find(objs, "Service", "vllm")
    assert service["spec"]["clusterIP"] == "None"  # DNS returns every ready pod, not one VIP
    _, query = next((o, c) for o, c in manifests.docqa_containers(objs) if c["name"] == "query-api")
    env = manifests.effective_env(query, objs)
    assert env["DOCQA_LLM_DISCOVERY"] == "dns"
    llm = LLMSettings(
        endpoints=env["DOCQA_LLM_ENDPOINTS"],
        discovery=env["DOCQA_LLM_DISCOVERY"],
        policy=env["DOCQA_LLM_POLICY"],
        max_in_flight=env["DOCQA_LLM_MAX_IN_FLIGHT"],
        queue_size=env["DOCQA_LLM_QUEUE_SIZE"],
    )
    assert [urlsplit(u).hostname for u in llm.endpoints] == ["vllm"]
    assert type(discovery_from(llm)).__name__ == "DnsDiscovery"


def test_keda_counts_requests_held_in_the_pools_queues() -> None:
    scaled = manifests.find(manifests.objects("overlays/keda"), "ScaledObject", "vllm")
    assert "docqa_llm_queue_depth" in scaled["spec"]["triggers"][0]["metadata"]["query"]
