// Talking to docqa: the API key, requests with it, readable errors, and Server-Sent Events.
//
// The key lives in sessionStorage (this tab only, gone when it closes) and travels only in the
// Authorization header: never in a URL, never in localStorage or a cookie.

const KEY_ITEM = "docqa.apiKey";

// the query service's base URL: the page is served at <base>/ui/ (also behind a path prefix)
export const QUERY_BASE = new URL("..", window.location.href).href.replace(/\/$/, "");

export function apiKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

export function setApiKey(key) {
  sessionStorage.setItem(KEY_ITEM, key);
}

export function forgetApiKey() {
  sessionStorage.removeItem(KEY_ITEM);
}

export class ApiError extends Error {
  constructor(status, code, message, { retryAfter = null, requestId = null, detail = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.requestId = requestId;
    this.detail = detail;
  }
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
}

// One call to a docqa service; resolves to the parsed JSON (or null for 204), rejects with
// ApiError for every non-2xx answer and for a network failure (status 0).
export async function request(base, path, { method = "GET", json, body, signal } = {}) {
  const init = { method, headers: headers(), signal, credentials: "omit", cache: "no-store" };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  const response = await send(`${base}${path}`, init);
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204) return null;
  return response.json();
}

// fetch, with a network failure turned into ApiError(0); an abort stays an AbortError
export async function send(url, init) {
  try {
    return await fetch(url, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "network_error", "the service could not be reached");
  }
}

// docqa's envelope {"error": {"code", "message", "detail"}, "request_id"} or OpenAI's
// {"error": {"message", "type", "code"}} (GET /v1/models): both have error.message.
export async function errorFrom(response) {
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  const error = (payload && payload.error) || {};
  const retry = response.headers.get("Retry-After");
  return new ApiError(
    response.status,
    error.code || error.type || "error",
    error.message || response.statusText || "request failed",
    {
      retryAfter: retry !== null && /^\d+$/.test(retry) ? Number(retry) : null,
      requestId: (payload && payload.request_id) || response.headers.get("X-Request-ID"),
      detail: error.detail ?? null,
    },
  );
}

// What to tell a person about an error, by status: what happened and what to do about it.
export function describeError(err, { scope = "query" } = {}) {
  if (!(err instanceof ApiError)) return `Something went wrong: ${err.message || err}`;
  const said = err.message ? ` The service said: “${err.message}”.` : "";
  const ref = err.requestId ? ` (request id ${err.requestId})` : "";
  switch (err.status) {
    case 0:
      return "The service could not be reached. Check that docqa is running and try again.";
    case 401:
      return `The API key was not accepted (401): enter a valid key above.${said}`;
    case 403:
      return `This API key may not do this (403): it needs the ${scope} scope.${said}`;
    case 404:
      return `Not found (404).${said} The collection may not exist or not be visible to this key.`;
    case 413:
      return `Too large (413).${said}`;
    case 415:
      return `Unsupported file or content type (415).${said}`;
    case 409:
    case 400:
    case 422:
      return `The request was not accepted (${err.status}).${said}`;
    case 429: {
      const wait = err.retryAfter !== null ? `try again in ${err.retryAfter} s` : "try again soon";
      return `Too many requests (429): ${wait}.${said}`;
    }
    case 503:
      return `The service is temporarily unavailable (503): try again shortly.${said}${ref}`;
    default:
      return `Unexpected error (${err.status}).${said}${ref}`;
  }
}

// Reads a text/event-stream body and calls onEvent(name, data) for each event, data parsed as
// JSON. Resolves when the stream ends.
export async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      dispatch(block, onEvent);
    }
  }
  if (buffer.trim()) dispatch(buffer, onEvent);
}

function dispatch(block, onEvent) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length) return;
  let parsed;
  try {
    parsed = JSON.parse(data.join("\n"));
  } catch {
    parsed = { text: data.join("\n") };
  }
  onEvent(name, parsed);
}
