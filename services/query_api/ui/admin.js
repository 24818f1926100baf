// The Documents tab: upload files to the indexing service, follow each job live (documents,
// chunks, failures with their reasons), list and delete a collection's documents.
//
// The indexing service is another origin (DOCQA_UI_INDEXING_URL); it admits this page by CORS.

import { describeError, request } from "./api.js";
import { el } from "./answer_view.js";

const $ = (id) => document.getElementById(id);
const TERMINAL = new Set(["succeeded", "failed", "partial"]);
const POLL_MS = 700;
const PAGE_SIZE = 50;
const STATES = {
  queued: "Waiting in the queue",
  running: "Indexing",
  succeeded: "Done",
  partial: "Done, some documents failed",
  failed: "Failed",
};

let indexingUrl = null;
let afterUpload = () => {};
let listing = { collection: null, cursor: null };

function showError(message) {
  $("admin-error").textContent = message;
  $("admin-error").hidden = !message;
}

function status(message) {
  $("admin-status").textContent = message;
}

function collectionName() {
  const input = $("admin-collection");
  return input.reportValidity() ? input.value.trim() : null;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function upload() {
  const collection = collectionName();
  const files = [...$("files").files];
  if (!collection || !files.length) return;
  showError("");
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  $("upload-button").disabled = true;
  status(`Uploading ${files.length} file(s) to ${collection}…`);
  try {
    const path = `/v1/collections/${encodeURIComponent(collection)}/documents`;
    const accepted = await request(indexingUrl, path, { method: "POST", body: form });
    $("files").value = "";
    status(`Uploaded: job ${accepted.job_id.slice(0, 8)} queued.`);
    followJob(accepted, collection);
  } catch (err) {
    status("");
    showError(describeError(err, { scope: "ingest" }));
  } finally {
    $("upload-button").disabled = false;
  }
}

function jobItem(accepted, collection) {
  const item = el("li", { class: "job", "data-job": accepted.job_id, "data-state": "queued" });
  const title = `Job ${accepted.job_id.slice(0, 8)}: ${accepted.documents} document(s) → ${collection}`;
  item.append(
    el("h3", { class: "job-title", text: title }),
    el("progress", { max: Math.max(accepted.documents, 1), value: 0, "aria-label": title }),
    el("p", { class: "job-state", text: STATES.queued }),
    el("ul", { class: "job-errors", "aria-label": "Failures" }),
  );
  for (const r of accepted.rejected || []) {
    item.lastChild.append(el("li", { text: `${r.filename}: not uploaded: ${r.error}` }));
  }
  $("jobs-empty").hidden = true;
  $("jobs").prepend(item);
  return item;
}

async function followJob(accepted, collection) {
  const item = jobItem(accepted, collection);
  let misses = 0;
  for (;;) {
    try {
      const job = await request(indexingUrl, `/v1/jobs/${encodeURIComponent(accepted.job_id)}`);
      misses = 0;
      renderJob(item, job, accepted.rejected || []);
      if (TERMINAL.has(job.state)) break;
    } catch (err) {
      misses += 1;
      if (misses >= 5) {
        item.querySelector(".job-state").textContent = describeError(err, { scope: "ingest" });
        return;
      }
    }
    await sleep(POLL_MS);
  }
  status(`Job ${accepted.job_id.slice(0, 8)}: ${STATES[item.dataset.state]}.`);
  afterUpload();
  if (listing.collection === collection) listDocuments(true);
}

function renderJob(item, job, rejected) {
  const total = Number(job.total || 0);
  const processed = Number(job.processed || 0);
  item.dataset.state = job.state;
  const bar = item.querySelector("progress");
  bar.max = Math.max(total, 1);
  bar.value = TERMINAL.has(job.state) ? bar.max : processed;
  const counts = [
    `${processed} of ${total} documents processed`,
    `${job.indexed || 0} indexed`,
    `${job.unchanged || 0} unchanged`,
    `${job.failed || 0} failed`,
    `${job.chunks || 0} chunks`,
  ].join(" · ");
  item.querySelector(".job-state").textContent = `${STATES[job.state] || job.state}: ${counts}`;
  const errors = item.querySelector(".job-errors");
  const lines = rejected.map((r) => `${r.filename}: not uploaded: ${r.error}`);
  for (const e of job.errors || []) lines.push(`${e.doc_id}: ${e.error}`);
  if (job.error) lines.push(`Job: ${job.error}`);
  errors.replaceChildren(...lines.map((text) => el("li", { text })));
}

async function listDocuments(reset) {
  const collection = reset ? collectionName() : listing.collection;
  if (!collection) return;
  if (reset) listing = { collection, cursor: null };
  showError("");
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (listing.cursor) query.set("cursor", listing.cursor);
  const path = `/v1/collections/${encodeURIComponent(collection)}/documents?${query}`;
  try {
    const page = await request(indexingUrl, path);
    const body = $("documents").tBodies[0];
    if (reset) body.replaceChildren();
    for (const doc of page.documents) body.append(documentRow(collection, doc));
    if (!body.rows.length) {
      body.append(el("tr", {}, el("td", { colspan: 4, text: `No documents in ${collection}.` })));
    }
    listing.cursor = page.next_cursor;
    $("more-documents").hidden = !page.next_cursor;
    status(`${body.rows.length} document(s) shown from ${collection}.`);
  } catch (err) {
    showError(describeError(err, { scope: "ingest" }));
  }
}

function documentRow(collection, doc) {
  const remove = el("button", {
    type: "button",
    class: "danger",
    text: "Delete",
    "aria-label": `Delete ${doc.doc_id}`,
  });
  remove.addEventListener("click", () => deleteDocument(collection, doc.doc_id, row));
  const row = el(
    "tr",
    { "data-doc": doc.doc_id },
    el("td", { text: doc.doc_id }),
    el("td", { text: doc.title || "—" }),
    el("td", { text: String(doc.chunk_count) }),
    el("td", {}, remove),
  );
  return row;
}

async function deleteDocument(collection, docId, row) {
  if (!window.confirm(`Delete “${docId}” from ${collection}? Its answers go with it.`)) return;
  const path = `/v1/collections/${encodeURIComponent(collection)}/documents/${encodeURIComponent(docId)}`;
  try {
    const result = await request(indexingUrl, path, { method: "DELETE" });
    row.remove();
    status(`Deleted ${docId} (${result.deleted_chunks} chunks).`);
    $("list-documents").focus();
  } catch (err) {
    showError(describeError(err, { scope: "ingest" }));
  }
}

export function setCollectionNames(names) {
  $("collection-names").replaceChildren(...names.map((name) => el("option", { value: name })));
}

export function initAdmin(config, { uploaded }) {
  indexingUrl = config.indexing_url;
  afterUpload = uploaded;
  if (!indexingUrl) {
    const off = $("admin-off");
    off.textContent =
      "The Documents tab is off: the query service does not know where the indexing service " +
      "is (set DOCQA_UI_INDEXING_URL, and list this page's origin in the indexing service's " +
      "DOCQA_CORS_ORIGINS).";
    off.hidden = false;
    for (const control of $("upload-form").elements) control.disabled = true;
    return;
  }
  $("upload-form").addEventListener("submit", (event) => {
    event.preventDefault();
    upload();
  });
  $("list-documents").addEventListener("click", () => listDocuments(true));
  $("more-documents").addEventListener("click", () => listDocuments(false));
}
