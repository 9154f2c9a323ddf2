// One live subscription: an EventSource on /events, its control messages, its state.
//
// EventSource reconnects by itself after a dropped connection (sending Last-Event-ID),
// but gives up for good after a non-200 answer and never tells why. Then the page
// probes the same URL with fetch to read the server's JSON error: a 4xx (401, 403,
// a bad topic) is shown and the stream stops; anything else is retried with backoff,
// resuming after the last id received, so no event is lost across the gap.
import { apiUrl, probe } from "./api.js";
import { setText } from "./frames.js";

/**
 * SSE event names of the server's control messages: the one table the page listens through.
 * The stream's fault message is `fault`; servers before it (CHANGELOG.md) sent `error`,
 * which EventSource also fires by itself (a plain Event, without data) when a connection
 * fails: a server's `error` is told apart by its data, and still shown. `error` stays
 * reserved on the server, so no event type can take either name.
 */
export const CONTROL_NAMES = ["gap", "reset", "live", "shutdown", "fault", "error"];

/** Names EventSource itself dispatches: never listened to as event types. */
const RESERVED = new Set(["open", "error", "message", ...CONTROL_NAMES]);

const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];

export class Stream {
  /**
   * @param selectors topics and patterns
   * @param types event types to listen for besides "message" (EventSource has no wildcard)
   * @param params extra query parameters: tail, last_event_id, queue, overflow
   * @param onItem called with {kind: "event", id, topic, type, ts, data, raw} or {kind: "control", name, fields}
   * @param onState called with this stream whenever `state` changes
   */
  constructor({ selectors, types = [], params = {}, onItem, onState }) {
    this.selectors = selectors;
    this.types = ["message", ...types.filter((t) => !RESERVED.has(t))];
    this.params = { ...params };
    this.onItem = onItem;
    this.onState = onState || (() => {});
    this.state = "idle";
    this.error = null;
    this.reconnects = 0;
    this.lastId = null;
    this.source = null;
    this.timer = null;
    this.attempt = 0;
  }

  get url() {
    const query = new URLSearchParams();
    for (const selector of this.selectors) query.append("topic", selector);
    for (const [name, value] of Object.entries(this.params)) {
      if (value !== undefined && value !== null && value !== "") query.set(name, value);
    }
    return apiUrl("events", query);
  }

  open() {
    this.close();
    this.closed = false;
    const source = new EventSource(this.url);
    this.source = source;
    this.setState(this.reconnects || this.attempt ? "reconnecting" : "connecting");
    source.addEventListener("open", () => {
      this.attempt = 0;
      this.error = null;
      this.setState("open");
    });
    source.addEventListener("error", (event) => {
      if (event instanceof MessageEvent) return; // the server's control message, handled below
      this.connectionFailed(source);
    });
    const onEvent = (event) => {
      this.lastId = event.lastEventId || this.lastId;
      const envelope = JSON.parse(event.data);
      this.onItem({ kind: "event", raw: event.data, ...envelope });
    };
    for (const type of this.types) source.addEventListener(type, onEvent);
    for (const name of CONTROL_NAMES) {
      source.addEventListener(name, (event) => {
        if (!(event instanceof MessageEvent)) return; // EventSource's own "error"
        let fields = {};
        try {
          fields = JSON.parse(event.data);
        } catch {
          fields = { data: event.data };
        }
        delete fields.control;
        this.onItem({ kind: "control", name, fields, raw: event.data });
      });
    }
  }

  connectionFailed(source) {
    if (source !== this.source || this.closed) return;
    if (source.readyState === EventSource.CONNECTING) {
      // The browser retries by itself (after the server's `retry:` hint), with Last-Event-ID.
      this.reconnects += 1;
      this.setState("reconnecting");
      return;
    }
    // CLOSED: the server answered something other than a 200 event stream.
    source.close();
    this.source = null;
    const url = this.url;
    probe(url).then((error) => {
      if (this.closed || this.source) return;
      this.error = error;
      if (error && error.isFinal) {
        this.setState("failed");
        return;
      }
      const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
      this.attempt += 1;
      this.setState("retrying");
      this.timer = setTimeout(() => this.resume(), delay);
    });
  }

  /** Open again after the last event received (a fresh EventSource does not send Last-Event-ID). */
  resume() {
    this.timer = null;
    if (this.lastId) {
      delete this.params.tail;
      this.params.last_event_id = this.lastId;
    }
    this.reconnects += 1;
    this.open();
  }

  /** Open again with new credentials (a new session cookie); a stream the user stopped stays stopped. */
  reopen() {
    if (this.state === "idle" || this.state === "closed") return;
    if (this.timer) clearTimeout(this.timer);
    this.attempt = 0;
    this.error = null;
    this.resume();
  }

  close() {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.source) this.source.close();
    this.source = null;
  }

  stop() {
    this.close();
    this.setState("closed");
  }

  setState(state) {
    this.state = state;
    this.onState(this);
  }

  /** A line for a status element: "open · 2 reconnects", "failed: 403 forbidden: ...". */
  describe() {
    const again = this.reconnects ? ` · ${this.reconnects} reconnect${this.reconnects > 1 ? "s" : ""}` : "";
    const why = this.error ? `: ${this.error.describe()}` : "";
    const words = {
      idle: "not subscribed",
      connecting: "connecting…",
      open: "live",
      reconnecting: "reconnecting…",
      retrying: "refused, retrying",
      failed: "refused",
      closed: "stopped",
    };
    return `${words[this.state] || this.state}${why}${again}`;
  }
}

/** Show `stream`'s selectors and state in a status element ("sensors.*: live · 1 reconnect"). */
export function showState(element, stream) {
  setText(element, `${stream.selectors.join(" ")}: ${stream.describe()}`);
  element.dataset.state = stream.state;
}
