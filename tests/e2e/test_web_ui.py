"""The web page at /ui in a real browser: Debian's chromium, headless, driven by Playwright,
against both services as processes on the real Redis, Milvus and vLLM.

One walk through the page as a user: enter the key, upload a document in the Documents tab and
wait for its job, ask, watch the answer stream in, open a citation and read the highlighted
passage, ask a follow-up in the same session, then use a wrong key and read the 401 message.
Along the way: axe-core (shipped inside the axe-playwright-python wheel, no network) finds no
WCAG 2.1 A/AA violation (labels, names, contrast, ...) on either tab, the page fits 360 px, and
every request the page made went to the stack's two origins and nowhere else.

Screenshots go to ``.docqa/test-artifacts/ui/`` (``$DOCQA_HOME/test-artifacts/ui``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, Request, Response, expect, sync_playwright

from deploy import browser, stack
from tests.e2e.conftest import ADMIN_KEY, Services
from tests.fixtures.documents import KOREAN_RULES

ARTIFACTS = stack.default_paths().home / "test-artifacts" / "ui"
COLLECTION = "ui_docs"
DOC_ID = "library_rules.txt"
QUESTION = "임직원은 한 번에 몇 권까지 빌릴 수 있나요?"
FOLLOW_UP = "연장은 몇 번 할 수 있나요?"
SHOTS = (
    "1-documents-tab",
    "2-answer",
    "3-cited-passage",
    "4-follow-up",
    "5-narrow-360px",
    "6-wrong-key",
)
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
JOB_TIMEOUT_MS = 120_000
ANSWER_TIMEOUT_MS = 90_000


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Traffic:
    """Every request the page made, and the responses to the questions it asked."""

    def __init__(self, page: Page) -> None:
        self.requests: list[Request] = []
        self.queries: list[Response] = []
        page.on("request", self._request)
        page.on("response", self._response)

    def _request(self, request: Request) -> None:
        self.requests.append(request)

    def _response(self, response: Response) -> None:
        if response.request.method == "POST" and urlsplit(response.url).path == "/v1/query":
            self.queries.append(response)

    def asked(self) -> list[dict[str, Any]]:
        return [r.request.post_data_json for r in self.queries]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    executable = browser.ensure_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, args=list(browser.CHROMIUM_ARGS), headless=True
        )
        yield launched
        launched.close()


def shoot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def assert_accessible(page: Page, where: str) -> None:
    options = {"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]}
    results = Axe().run(page, options=options)
    assert results.violations_count == 0, f"{where}: {results.generate_report()}"


def use_key(page: Page, key: str) -> None:
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#key-status")).to_contain_text(key[-4:])


def upload_and_wait(page: Page) -> None:
    page.get_by_role("tab", name="Documents").click()
    page.locator("#admin-collection").fill(COLLECTION)
    page.locator("#files").set_input_files(
        files=[{"name": DOC_ID, "mimeType": "text/plain", "buffer": KOREAN_RULES.encode()}]
    )
    page.get_by_role("button", name="Upload").click()
    job = page.locator("#jobs li.job").first
    expect(job).to_have_attribute("data-state", "succeeded", timeout=JOB_TIMEOUT_MS)
    expect(job.locator(".job-state")).to_contain_text("1 of 1 documents processed")
    expect(job.locator(".job-state")).to_contain_text("0 failed")
    page.get_by_role("button", name="Show documents").click()
    expect(page.locator(f'#documents tr[data-doc="{DOC_ID}"]')).to_be_visible()
    assert_accessible(page, "Documents tab")
    shoot(page, "1-documents-tab")


def ask(page: Page, question: str, *, turn: int, keyboard: bool = False) -> Any:
    box = page.get_by_label("Question (Korean or English)")
    box.fill(question)
    if keyboard:  # Enter asks
        box.press("Enter")
    else:
        page.get_by_role("button", name="Ask", exact=True).click()
    answered = page.locator("#transcript li.turn").nth(turn)
    expect(answered).to_have_attribute("data-state", "done", timeout=ANSWER_TIMEOUT_MS)
    return answered


def ask_and_open_citation(page: Page, traffic: Traffic) -> None:
    page.get_by_role("tab", name="Ask").click()
    expect(page.locator(f'#collection option[value="{COLLECTION}"]')).to_have_count(1)
    page.get_by_role("tabpanel", name="Ask").get_by_label("Collection").select_option(COLLECTION)
    page.get_by_label("Answer mode").select_option("extractive")
    first = ask(page, QUESTION, turn=0)
    expect(first.locator(".answer")).to_contain_text("5권")
    expect(first.locator(".labels")).to_contain_text("Extractive: quoted from the source")
    response = traffic.queries[0]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert traffic.asked()[0]["stream"] is True
    shoot(page, "2-answer")

    first.locator(".answer button.cite-link").first.click()
    passage = page.locator("#passage")
    expect(passage).to_be_visible()
    expect(page.locator("#passage-title")).to_contain_text("Source [1]")
    expect(page.locator("#passage-section")).to_contain_text("제3조")
    expect(passage.locator("mark.quoted")).to_contain_text("5권까지 빌릴 수 있다")
    assert_accessible(page, "cited passage")
    shoot(page, "3-cited-passage")
    page.keyboard.press("Escape")
    expect(passage).to_be_hidden()


def follow_up(page: Page, traffic: Traffic) -> None:
    second = ask(page, FOLLOW_UP, turn=1, keyboard=True)
    expect(second.locator(".answer")).not_to_be_empty()
    first_ask, second_ask = traffic.asked()[:2]
    assert first_ask["session_id"] and first_ask["session_id"] == second_ask["session_id"]
    first = page.locator("#transcript li.turn").nth(0)
    first.get_by_role("button", name="Copy answer with citations").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert "5권" in copied and "\n\nSources:\n[1] " in copied, copied
    assert_accessible(page, "Ask tab with a conversation")
    shoot(page, "4-follow-up")


def new_conversation_forgets_the_session(page: Page, traffic: Traffic) -> None:
    forgotten = f"/v1/sessions/{traffic.asked()[0]['session_id']}"
    with page.expect_request(
        lambda r: r.method == "DELETE" and urlsplit(r.url).path == forgotten
    ) as deleted:
        page.get_by_role("button", name="New conversation").click()
    assert deleted.value.response() is not None
    expect(page.locator("#transcript li")).to_have_count(0)


def deleting_a_document(page: Page) -> None:
    page.get_by_role("tab", name="Documents").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Delete {DOC_ID}").click()
    expect(page.locator(f'#documents tr[data-doc="{DOC_ID}"]')).to_have_count(0)
    expect(page.locator("#admin-status")).to_contain_text(f"Deleted {DOC_ID}")
    page.get_by_role("tab", name="Ask").click()


ERROR_MESSAGES = """async () => {
  const { ApiError, describeError } = await import("./api.js");
  const said = (status, extra = {}) =>
    describeError(new ApiError(status, "x", "because", extra), { scope: "ingest" });
  return {
    403: said(403), 404: said(404), 413: said(413),
    429: said(429, { retryAfter: 7 }), 503: said(503), 0: said(0),
  };
}"""


def errors_are_sentences(page: Page) -> None:
    """What the page says for the other statuses (the 401 is triggered for real below)."""
    said = page.evaluate(ERROR_MESSAGES)
    assert said["403"].startswith("This API key may not do this (403): it needs the ingest scope")
    assert said["404"].startswith("Not found (404).")
    assert said["413"].startswith("Too large (413).")
    assert said["429"].startswith("Too many requests (429): try again in 7 s.")
    assert said["503"].startswith("The service is temporarily unavailable (503)")
    assert said["0"].startswith("The service could not be reached.")


def fits_narrow_screen(page: Page) -> None:
    page.set_viewport_size({"width": 360, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    shoot(page, "5-narrow-360px")
    page.set_viewport_size({"width": 1100, "height": 900})


def wrong_key_is_explained(page: Page, traffic: Traffic) -> None:
    use_key(page, "not-a-valid-key")
    page.get_by_label("Question (Korean or English)").fill(QUESTION)
    page.get_by_role("button", name="Ask", exact=True).click()
    alert = page.get_by_role("alert").filter(has_text="401")
    expect(alert).to_contain_text("The API key was not accepted (401)")
    # a new conversation after "New conversation": not the session of the first questions
    assert traffic.asked()[-1]["session_id"] != traffic.asked()[0]["session_id"]
    shoot(page, "6-wrong-key")


def test_the_web_page_uploads_asks_cites_follows_up_and_explains_errors(
    chromium: Browser, services: Services
) -> None:
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    context = chromium.new_context(
        viewport={"width": 1100, "height": 900},
        locale="ko-KR",
        permissions=["clipboard-read", "clipboard-write"],
    )
    page = context.new_page()
    traffic = Traffic(page)
    console = []
    page.on("console", lambda message: console.append(message.text))
    try:
        page.goto(f"{services.query_url}/ui/")
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        use_key(page, ADMIN_KEY)
        upload_and_wait(page)
        ask_and_open_citation(page, traffic)
        follow_up(page, traffic)
        fits_narrow_screen(page)
        new_conversation_forgets_the_session(page, traffic)
        deleting_a_document(page)
        errors_are_sentences(page)
        key_stored = page.evaluate("sessionStorage.getItem('docqa.apiKey')")
        wrong_key_is_explained(page, traffic)
    finally:
        context.close()
    assert key_stored == ADMIN_KEY
    stack_origins = {origin(services.query_url), origin(services.indexing_url)}
    assert {origin(r.url) for r in traffic.requests} <= stack_origins
    assert {origin(r.url) for r in traffic.requests} == stack_origins  # the upload went there
    assert not [r.url for r in traffic.requests if ADMIN_KEY in r.url], "a key in a URL"
    assert not [text for text in console if "Content Security Policy" in text]
    assert sorted(p.name for p in ARTIFACTS.glob("*.png")) == [f"{name}.png" for name in SHOTS]
