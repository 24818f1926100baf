// The Ask tab: pick a collection, ask, watch the answer stream in (POST /v1/query with
// "stream": true), open the cited passages, follow up in the same session, start over.

import {
  ApiError,
  QUERY_BASE,
  apiKey,
  describeError,
  errorFrom,
  readEvents,
  request,
  send,
} from "./api.js";
import {
  answerLabels,
  answerNodes,
  citationLine,
  copyText,
  el,
  passageNodes,
  quotedRanges,
} from "./answer_view.js";

const SESSION_ITEM = "docqa.session";
const $ = (id) => document.getElementById(id);

let running = null; // the AbortController of the answer being streamed
let onCollections = () => {};

function sessionId() {
  let id = sessionStorage.getItem(SESSION_ITEM);
  if (!id) {
    id = crypto.randomUUID();
    sessionStorage.setItem(SESSION_ITEM, id);
  }
  return id;
}

function showError(message) {
  const box = $("ask-error");
  box.textContent = message;
  box.hidden = !message;
}

function status(message) {
  $("ask-status").textContent = message;
}

export async function loadCollections() {
  const select = $("collection");
  const previous = select.value;
  if (!apiKey()) {
    select.replaceChildren(el("option", { value: "", text: "Enter an API key first" }));
    return;
  }
  try {
    const models = await request(QUERY_BASE, "/v1/models");
    const names = models.data.map((m) => m.id).sort();
    select.replaceChildren(
      ...(names.length
        ? names.map((name) => el("option", { value: name, text: name }))
        : [el("option", { value: "", text: "No collections visible to this key" })]),
    );
    if (names.includes(previous)) select.value = previous;
    onCollections(names);
    showError("");
  } catch (err) {
    // the list shown stays: with a bad key, asking then says why too
    if (!select.options.length) {
      select.replaceChildren(el("option", { value: "", text: "Collections could not be loaded" }));
    }
    showError(describeError(err));
  }
}

async function newConversation({ announce = true } = {}) {
  const old = sessionStorage.getItem(SESSION_ITEM);
  sessionStorage.removeItem(SESSION_ITEM);
  $("transcript").replaceChildren();
  if (old && apiKey()) {
    // the server forgets the old turns; a 404 only means it had none
    request(QUERY_BASE, `/v1/sessions/${encodeURIComponent(old)}`, { method: "DELETE" }).catch(() => {});
  }
  if (announce) status("New conversation: earlier questions are forgotten.");
}

function setBusy(busy) {
  $("ask-button").disabled = busy;
  $("stop-button").hidden = !busy;
}

async function ask(question) {
  const collection = $("collection").value;
  if (!collection) {
    showError("Pick a collection first (enter a key and reload the collections).");
    return;
  }
  showError("");
  const turn = startTurn(question);
  const body = { collection, question, session_id: sessionId(), stream: true };
  const mode = $("answer-mode").value;
  if (mode) body.answer_mode = mode;
  running = new AbortController();
  setBusy(true);
  status("Answering…");
  try {
    const answer = await streamAnswer(body, turn, running.signal);
    finishTurn(turn, answer);
    status(answer.not_found ? "No answer found in the documents." : "Answer ready.");
    $("question").value = "";
  } catch (err) {
    turn.remove();
    if (err.name === "AbortError") status("Stopped.");
    else {
      status("");
      showError(describeError(err));
      holdOff(err);
    }
  } finally {
    running = null;
    setBusy(false);
  }
}

// after a 429, asking again is pointless until the time the service named
function holdOff(err) {
  if (!(err instanceof ApiError) || err.status !== 429 || !err.retryAfter) return;
  const button = $("ask-button");
  button.disabled = true;
  setTimeout(() => {
    if (!running) button.disabled = false;
  }, err.retryAfter * 1000);
}

async function streamAnswer(body, turn, signal) {
  const response = await send(`${QUERY_BASE}/v1/query`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${apiKey()}` },
    body: JSON.stringify(body),
    signal,
    credentials: "omit",
    cache: "no-store",
  });
  if (!response.ok) throw await errorFrom(response);
  if (!(response.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
    return response.json(); // an answer found without generating may come whole
  }
  let final = null;
  let failure = null;
  await readEvents(response, (event, data) => {
    if (event === "token") turn.answerBox.append(data.text || "");
    else if (event === "done") final = data;
    else if (event === "error") {
      const e = data.error || {};
      failure = new ApiError(503, e.code || "error", e.message || "the answer failed", {
        requestId: data.request_id,
      });
    }
  });
  if (failure) throw failure;
  if (!final) throw new ApiError(503, "stream_ended", "the answer stream ended early");
  return final;
}

function startTurn(question) {
  const answerBox = el("div", { class: "answer", "aria-busy": "true" });
  const item = el(
    "li",
    { class: "turn", "data-state": "streaming" },
    el("p", { class: "question" }, el("span", { class: "visually-hidden", text: "Question: " }),
      question),
    answerBox,
  );
  item.answerBox = answerBox;
  $("transcript").append(item);
  return item;
}

function finishTurn(turn, answer) {
  const box = turn.answerBox;
  box.replaceChildren(...answerNodes(answer, (c, opener) => openPassage(c, answer, opener)));
  box.setAttribute("aria-busy", "false");
  box.classList.toggle("not-found", Boolean(answer.not_found));
  turn.dataset.state = "done";
  turn.dataset.mode = answer.answer_mode || "";
  const labels = el("ul", { class: "labels", "aria-label": "About this answer" });
  for (const [text, kind] of answerLabels(answer)) {
    labels.append(el("li", { class: `label label-${kind}`, text }));
  }
  turn.append(labels);
  if (answer.faq) turn.append(el("p", { class: "hint", text: `FAQ entry: “${answer.faq.question}”` }));
  if (answer.standalone_question) {
    turn.append(el("p", { class: "hint", text: `Understood as: ${answer.standalone_question}` }));
  }
  const unsupported = answer.grounding?.unsupported || [];
  if (unsupported.length) {
    const list = el("ul", { class: "unsupported-list", "aria-label": "Claims not found" });
    for (const u of unsupported) {
      list.append(el("li", { text: `${u.claim} (${u.kind}) — not in the sources it cites` }));
    }
    turn.append(list);
  }
  turn.append(sourcesList(answer), copyButton(answer));
}

function sourcesList(answer) {
  const citations = [...(answer.citations || [])].sort((a, b) => b.cited - a.cited || a.n - b.n);
  if (!citations.length) return document.createTextNode("");
  const list = el("ul", { class: "sources", "aria-label": "Sources" });
  for (const c of citations) {
    const button = el("button", {
      type: "button",
      class: c.cited ? "source cited" : "source",
      text: `${citationLine(c)}${c.cited ? " (cited)" : ""}`,
    });
    button.addEventListener("click", () => openPassage(c, answer, button));
    list.append(el("li", {}, button));
  }
  return el("details", { class: "sources-box", open: true },
    el("summary", { text: `Sources (${citations.length})` }), list);
}

function copyButton(answer) {
  const button = el("button", { type: "button", class: "secondary copy", text: "Copy answer with citations" });
  button.addEventListener("click", async () => {
    const text = copyText(answer);
    try {
      await navigator.clipboard.writeText(text);
      status("Answer and citations copied.");
    } catch {
      status("Copying was not allowed by the browser.");
    }
  });
  return button;
}

function openPassage(citation, answer, opener) {
  const dialog = $("passage");
  $("passage-title").textContent = `Source [${citation.n}]: ${citation.title || citation.doc_id}`;
  $("passage-doc").textContent = citation.doc_id;
  $("passage-section").textContent = citation.section || "—";
  $("passage-page").textContent = citation.page ?? "—";
  const span =
    citation.char_start !== null && citation.char_start !== undefined
      ? `${citation.char_start}–${citation.char_end} of the document`
      : "—";
  $("passage-span").textContent = span;
  const ranges = quotedRanges(answer.answer || "", citation);
  $("passage-text").replaceChildren(...passageNodes(citation, ranges));
  dialog.returnFocusTo = opener;
  dialog.showModal();
  const first = dialog.querySelector("mark.quoted");
  if (first) first.scrollIntoView({ block: "nearest" });
}

export function initAsk({ collectionsChanged }) {
  onCollections = collectionsChanged;
  $("ask-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const question = $("question").value.trim();
    if (question && !running) ask(question);
  });
  $("question").addEventListener("keydown", (event) => {
    // not while an IME (Korean input) is composing: that Enter picks the syllable
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("ask-form").requestSubmit();
    }
  });
  $("stop-button").addEventListener("click", () => running && running.abort());
  $("new-conversation").addEventListener("click", () => newConversation());
  $("collection").addEventListener("change", () => newConversation({ announce: false }));
  $("reload-collections").addEventListener("click", loadCollections);
  const dialog = $("passage");
  $("passage-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => dialog.returnFocusTo?.focus());
}
