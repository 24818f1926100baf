"""Both services as real processes (`docqa serve`, the ``services`` fixture of conftest.py),
against the real servers: upload a file, ask a question, get an answer that cites it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Servers
from tests.e2e.conftest import ADMIN_KEY, QUERY_KEY, Services
from tests.fixtures.documents import ENGLISH_GUIDE, KOREAN_RULES


def wait_for_job(indexing_url: str, job_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        job: dict[str, object] = httpx.get(
            f"{indexing_url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        ).json()
        if job["state"] in {"succeeded", "failed", "partial"}:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish")


def upload_samples(services: Services) -> None:
    """Into collection ``e2e_docs``; a second upload finds them unchanged."""
    files = [
        ("files", ("library_rules.txt", KOREAN_RULES.encode(), "text/plain")),
        ("files", ("grinder.md", ENGLISH_GUIDE.encode(), "text/markdown")),
    ]
    response = httpx.post(
        f"{services.indexing_url}/v1/collections/e2e_docs/documents",
        files=files,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert response.status_code == 202, response.text
    job = wait_for_job(services.indexing_url, response.json()["job_id"])
    assert job["state"] == "succeeded", job


def test_uploaded_file_is_cited_in_the_answer(services: Services) -> None:
    upload_samples(services)
    response = httpx.post(
        f"{services.query_url}/v1/query",
        json={"collection": "e2e_docs", "question": "임직원은 한 번에 몇 권까지 빌릴 수 있나요?"},
        headers={"Authorization": f"Bearer {QUERY_KEY}"},
        timeout=300,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"].strip()
    assert body["citations"], body
    assert body["citations"][0]["doc_id"] == "library_rules.txt"
    assert "5권" in body["citations"][0]["text"]


def test_services_publish_openapi(services: Services) -> None:
    for url in (services.query_url, services.indexing_url):
        spec = httpx.get(f"{url}/openapi.json").json()
        assert spec["openapi"].startswith("3.")
    paths = httpx.get(f"{services.query_url}/openapi.json").json()["paths"]
    assert "/v1/query" in paths and "/v1/retrieve" in paths


def _vllm_gauges_and_finished(llm_url: str) -> tuple[float, float]:
    """(requests running or waiting, requests finished normally) as vLLM reports them."""
    metrics = httpx.get(llm_url.removesuffix("/v1") + "/metrics").text
    busy = finished = 0.0
    for line in metrics.splitlines():
        value = line.rsplit(" ", 1)[-1]
        if line.startswith(("vllm:num_requests_running{", "vllm:num_requests_waiting{")):
            busy += float(value)
        elif line.startswith("vllm:request_success_total{"):  # stop or length; aborts not
            finished += float(value)
    return busy, finished


def test_stream_arrives_token_by_token_and_a_disconnect_aborts_generation(
    services: Services, servers: Servers
) -> None:
    """Over real HTTP: a token event arrives first, and a client that goes away makes vLLM
    abort the generation (it ends without finishing) instead of finishing it for no one."""
    assert servers.llm_url
    upload_samples(services)
    question = {
        "collection": "e2e_docs",
        "question": "Explain in detail every grind setting and every cleaning step, one by one.",
        "stream": True,
    }
    _, finished_before = _vllm_gauges_and_finished(servers.llm_url)
    with httpx.stream(
        "POST",
        f"{services.query_url}/v1/query",
        json=question,
        headers={"Authorization": f"Bearer {QUERY_KEY}"},
        timeout=300,
    ) as response:
        assert response.status_code == 200
        first_line = next(response.iter_lines())
    assert first_line == "event: token"  # and we hang up here, mid-answer

    deadline = time.monotonic() + 15
    while (state := _vllm_gauges_and_finished(servers.llm_url))[0] > 0:
        assert time.monotonic() < deadline, "vLLM kept generating for a client that left"
        time.sleep(0.1)
    assert state[1] == finished_before, "the generation ran to its end instead of aborting"


SAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "samples"


def upload_readme_samples(services: Services, collection: str) -> None:
    """The documents `make up` loads (deploy/samples), uploaded as a user would."""
    files = [
        ("files", (path.name, path.read_bytes(), "text/plain"))
        for path in sorted(SAMPLES.iterdir())
        if path.suffix in {".txt", ".md"} and path.name != "README.md"
    ]
    response = httpx.post(
        f"{services.indexing_url}/v1/collections/{collection}/documents",
        files=files,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert response.status_code == 202, response.text
    job = wait_for_job(services.indexing_url, response.json()["job_id"])
    assert job["state"] == "succeeded", job


def ask_default(services: Services, collection: str, question: str) -> dict[str, object]:
    response = httpx.post(
        f"{services.query_url}/v1/query",
        json={"collection": collection, "question": question},
        headers={"Authorization": f"Bearer {QUERY_KEY}"},
        timeout=300,
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_the_readme_question_is_answered_right_in_the_default_mode(services: Services) -> None:
    """What a newcomer reads after `make up`: the per-diem amount of 제8조, cited, verified."""
    upload_readme_samples(services, "readme_samples")
    body = ask_default(services, "readme_samples", "국내 출장의 일비는 하루에 얼마인가요?")
    answer = str(body["answer"])
    assert "50,000원" in answer or "5만 원" in answer, body
    citations = body["citations"]
    assert isinstance(citations, list)
    cited = [c for c in citations if c["cited"]]
    assert cited and all(f"[{c['n']}]" in answer for c in cited)
    assert any("제8조" in c["section"] or "제8조" in c["text"] for c in cited), cited
    grounding = body["grounding"]
    assert isinstance(grounding, dict)
    assert grounding["verified"] is True and grounding["answers_question"] is True


@pytest.mark.parametrize(
    "question",
    [
        "회사 주차장의 월 이용 요금은 얼마인가요?",
        # the samples say nothing of rental cars (렌터카, 대여, 한도 are in no chunk), while
        # 제7조's sentence on one's own car scores well: answered with it before the
        # extractive answer's vocabulary gate
        "국내 출장의 렌터카 대여료 한도는 얼마인가요?",
    ],
)
def test_a_question_the_samples_cannot_answer_gets_not_found(
    services: Services, question: str
) -> None:
    upload_readme_samples(services, "readme_samples")
    body = ask_default(services, "readme_samples", question)
    assert body["not_found"] is True, body
    assert body["answer"] == "제공된 문서에서 답을 찾을 수 없습니다."
