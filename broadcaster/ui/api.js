// Talking to the server: relative URLs, JSON errors, and probing a stream's status.
//
// Every error answer of the server is {"error": {"code", "message"}}; the page shows
// that message as it is (it names the topic, the parameter or the missing grant).

/** A refused or failed request: the HTTP status (0: no answer), the server's code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** "403 forbidden: may not subscribe to ..." */
  describe() {
    return this.status ? `${this.status} ${this.code}: ${this.message}` : this.message;
  }

  get isAccess() {
    return this.status === 401 || this.status === 403;
  }

  /** A mistake of the request (4xx): retrying the same request will not help. */
  get isFinal() {
    return this.status >= 400 && this.status < 500;
  }
}

const listeners = new Set();

/** Call `listener(error)` for every 401 or 403 the page receives (the access notice). */
export function onAccessError(listener) {
  listeners.add(listener);
}

function report(error) {
  if (error.isAccess) for (const listener of listeners) listener(error);
  return error;
}

/** An URL of the server's API, relative to the page (works under a path prefix). */
export function apiUrl(path, params) {
  const url = new URL(path, document.baseURI);
  if (params) url.search = params.toString();
  return url;
}

/** The ApiError of a non-2xx response, from its JSON error body when it has one. */
export async function errorFrom(response) {
  let code = `http_${response.status}`;
  let message = response.statusText || "the request failed";
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // not JSON: keep the status line
  }
  return report(new ApiError(response.status, code, message));
}

function unreachable(error) {
  return new ApiError(0, "unreachable", `cannot reach the server (${error.message})`);
}

/** fetch() that throws an ApiError for a failed request or a non-2xx answer. */
export async function request(url, options = {}) {
  let response;
  try {
    response = await fetch(url, { credentials: "same-origin", ...options });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw unreachable(error);
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

export async function getJSON(url) {
  const response = await request(url, { headers: { Accept: "application/json" } });
  return response.json();
}

/**
 * Why a stream URL is refused: EventSource reports only "error", never the status.
 * Opens the same URL with fetch, reads the status and aborts at once; null if it is accepted.
 */
export async function probe(url) {
  const controller = new AbortController();
  try {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "text/event-stream" },
      signal: controller.signal,
    });
    if (response.ok) return null;
    return await errorFrom(response);
  } catch (error) {
    return unreachable(error);
  } finally {
    controller.abort();
  }
}

/**
 * The events of a bounded NDJSON stream (its URL sets max_events and max_duration, so the
 * server ends it: nothing is aborted), without its control messages.
 */
export async function readEvents(url) {
  const response = await request(url, { headers: { Accept: "application/x-ndjson" } });
  const text = await response.text();
  return text
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line))
    .filter((item) => !item.control);
}
