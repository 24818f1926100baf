"""Admission control of retrieval/extraction: a bounded number run, a bounded queue waits in
order, and beyond either bound the question is refused at once with 503 + Retry-After."""

from __future__ import annotations

import asyncio

import pytest

from docqa_core.errors import retry_after_header
from query_engine.admission import AdmissionConfig, Overloaded, WorkAdmission


async def hold(admission: WorkAdmission, release: asyncio.Event, *, shed: bool = True) -> str:
    async with admission.slot(shed=shed):
        await release.wait()
    return "done"


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_beyond_active_and_queued_a_question_is_refused_at_once() -> None:
    admission = WorkAdmission(AdmissionConfig(max_active=1, max_queued=1, max_wait_s=30))
    release = asyncio.Event()
    running = asyncio.create_task(hold(admission, release))
    queued = asyncio.create_task(hold(admission, release))
    await settle()
    assert admission.waiting == 1
    with pytest.raises(Overloaded) as refused:
        async with asyncio.timeout(1):  # refused now, not after max_wait_s
            async with admission.slot():
                pass
    assert refused.value.http_status == 503
    assert refused.value.code == "overloaded"
    assert retry_after_header(refused.value) == {"Retry-After": "1"}
    release.set()
    assert await asyncio.gather(running, queued) == ["done", "done"]
    assert admission.waiting == 0


async def test_a_question_that_waits_too_long_is_refused_and_leaves_the_queue() -> None:
    admission = WorkAdmission(AdmissionConfig(max_active=1, max_queued=8, max_wait_s=0.05))
    release = asyncio.Event()
    running = asyncio.create_task(hold(admission, release))
    await settle()
    with pytest.raises(Overloaded, match=r"no slot within 0\.05 s"):
        async with admission.slot():
            pass
    assert admission.waiting == 0
    release.set()
    await running
    async with admission.slot():  # the slot came back: nothing leaked
        pass


async def test_an_admitted_question_s_next_stage_waits_without_being_refused() -> None:
    admission = WorkAdmission(AdmissionConfig(max_active=1, max_queued=0, max_wait_s=0.01))
    release = asyncio.Event()
    running = asyncio.create_task(hold(admission, release))
    await settle()
    extraction = asyncio.create_task(hold(admission, asyncio.Event(), shed=False))
    await asyncio.sleep(0.05)  # well past max_wait_s, queue "full": still waiting, not refused
    assert not extraction.done()
    release.set()
    await running
    await settle()
    assert not extraction.done()  # it holds the slot now (its own event is never set)
    extraction.cancel()
    with pytest.raises(asyncio.CancelledError):
        await extraction


async def test_slots_run_in_parallel_up_to_max_active() -> None:
    admission = WorkAdmission(AdmissionConfig(max_active=3, max_queued=0, max_wait_s=1))
    release = asyncio.Event()
    tasks = [asyncio.create_task(hold(admission, release)) for _ in range(3)]
    await settle()
    assert admission.waiting == 0  # all three running, none queued
    release.set()
    assert await asyncio.gather(*tasks) == ["done"] * 3


async def test_an_admitted_stage_goes_ahead_of_new_questions_queued_before_it() -> None:
    admission = WorkAdmission(AdmissionConfig(max_active=1, max_queued=8, max_wait_s=30))
    order: list[str] = []
    release = asyncio.Event()

    async def stage(name: str, shed: bool) -> None:
        async with admission.slot(shed=shed):
            order.append(name)

    running = asyncio.create_task(hold(admission, release))
    await settle()
    new = asyncio.create_task(stage("new question", True))
    await settle()
    extraction = asyncio.create_task(stage("extraction", False))
    await settle()
    release.set()
    await asyncio.gather(running, new, extraction)
    assert order == ["extraction", "new question"]


async def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    admission = WorkAdmission(AdmissionConfig(max_active=1, max_queued=8, max_wait_s=30))
    release = asyncio.Event()
    running = asyncio.create_task(hold(admission, release))
    await settle()
    gone = asyncio.create_task(hold(admission, asyncio.Event()))  # its client went away
    after = asyncio.create_task(hold(admission, release))
    await settle()
    gone.cancel()
    release.set()
    assert await asyncio.gather(running, after) == ["done", "done"]
    assert admission.waiting == 0
    async with asyncio.timeout(1), admission.slot():  # nothing leaked: the slot is free
        pass
