// The inspector: a live table of the events and control messages of chosen topics and patterns.
//
// Bounded: at most `settings.maxRows` rows exist (in the DOM and in memory); events that
// arrive faster than frames are painted wait in a buffer of the same bound, so a burst
// costs one DOM update per frame, and rows that would be removed before ever being seen
// are never built.
import { clock, h, perFrame, setText, words } from "./frames.js";
import { Stream } from "./stream.js";

function describeControl(name, fields) {
  switch (name) {
    case "gap":
      return `${fields.dropped ?? "some"} event(s) dropped for this page` +
        (fields.first_id ? ` (${fields.first_id} … ${fields.last_id})` : "") +
        (fields.reason ? `: ${fields.reason}` : "");
    case "live":
      return `live: ${fields.replayed ?? 0} replayed, live events follow`;
    case "reset":
      return `events were lost: ${fields.reason || "history does not reach back"}`;
    case "shutdown":
      return `server stopping: ${fields.reason || ""}` + (fields.retry_ms ? `, reconnect in ${fields.retry_ms} ms` : "");
    default:
      return [fields.reason, fields.message].filter(Boolean).join(": ") || JSON.stringify(fields);
  }
}

function summary(data) {
  const text = JSON.stringify(data);
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

export class Inspector {
  constructor(settings) {
    this.settings = settings;
    this.form = document.getElementById("inspector-form");
    this.body = document.querySelector("#inspector-table tbody");
    this.stateLine = document.getElementById("inspector-state");
    this.counts = document.getElementById("inspector-counts");
    this.pauseButton = document.getElementById("inspector-pause");
    this.filterBox = document.getElementById("inspector-filter");
    this.stream = null;
    this.rows = []; // oldest first: {item, tr, text}
    this.pending = []; // waiting for the next frame
    this.held = []; // arrived while paused (the newest maxRows of them)
    this.heldCount = 0;
    this.received = 0;
    this.paused = false;
    this.filter = "";
    this.schedule = perFrame(() => this.flush());

    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.subscribe();
    });
    document.getElementById("inspector-stop").addEventListener("click", () => this.stop());
    this.pauseButton.addEventListener("click", () => this.setPaused(!this.paused));
    document.getElementById("inspector-clear").addEventListener("click", () => this.clear());
    document.getElementById("inspector-download").addEventListener("click", () => this.download());
    this.filterBox.addEventListener("input", () => this.setFilter(this.filterBox.value));
    this.filterBox.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        this.filterBox.value = "";
        this.setFilter("");
      }
    });
    this.updateCounts();
  }

  /** Subscribe to one topic from the topics list. */
  openTopic(topic) {
    this.form.elements.topics.value = topic;
    this.subscribe();
  }

  subscribe() {
    const fields = this.form.elements;
    const selectors = words(fields.topics.value);
    if (!selectors.length) return;
    const params = { queue: fields.queue.value, overflow: fields.overflow.value };
    const from = fields.from.value;
    const value = fields.fromValue.value.trim();
    if (from === "tail") params.tail = value || "100";
    if (from === "id") params.last_event_id = value;
    if (this.stream) this.stream.close();
    this.stream = new Stream({
      selectors,
      types: words(fields.types.value),
      params,
      onItem: (item) => this.receive(item),
      onState: (stream) => this.showState(stream),
    });
    this.stream.open();
  }

  stop() {
    if (this.stream) this.stream.stop();
  }

  showState(stream) {
    if (stream !== this.stream) return;
    setText(this.stateLine, `${stream.selectors.join(" ")}: ${stream.describe()}`);
    this.stateLine.dataset.state = stream.state;
  }

  receive(item) {
    this.received += 1;
    const max = this.settings.maxRows;
    if (this.paused) {
      this.heldCount += 1;
      this.held.push(item);
      if (this.held.length > max * 2) this.held.splice(0, this.held.length - max);
    } else {
      this.pending.push(item);
      if (this.pending.length > max * 2) this.pending.splice(0, this.pending.length - max);
    }
    this.schedule();
  }

  setPaused(paused) {
    this.paused = paused;
    if (!paused) {
      this.pending.push(...this.held);
      this.held = [];
      this.heldCount = 0;
    }
    this.pauseButton.setAttribute("aria-pressed", String(paused));
    this.schedule();
  }

  flush() {
    const max = this.settings.maxRows;
    let items = this.pending;
    this.pending = [];
    if (items.length > max) items = items.slice(items.length - max);
    if (items.length) {
      const fragment = document.createDocumentFragment();
      const added = items.map((item) => this.row(item));
      for (let i = added.length - 1; i >= 0; i--) fragment.append(added[i].tr);
      this.body.prepend(fragment);
      this.rows.push(...added);
    }
    this.trim();
    this.updateCounts();
  }

  trim() {
    const excess = this.rows.length - this.settings.maxRows;
    if (excess > 0) for (const row of this.rows.splice(0, excess)) row.tr.remove();
  }

  row(item) {
    let tr;
    if (item.kind === "control") {
      tr = h(
        "tr",
        { class: `control control-${item.name}` },
        h("td", { class: "time", text: clock(Date.now()) }),
        h("td", { class: "topic muted", text: "(stream)" }),
        h("td", { class: "type" }, h("span", { class: "badge", text: item.name })),
        h("td", { class: "id", text: item.fields.last_id || item.fields.last_event_id || "" }),
        h("td", { class: "data", text: describeControl(item.name, item.fields) }),
      );
    } else {
      const details = h("details", {}, h("summary", { text: summary(item.data) }));
      details.addEventListener("toggle", () => {
        if (details.open && details.childElementCount === 1) {
          details.append(h("pre", { text: JSON.stringify(item.data, null, 2) }));
        }
      }, { once: true });
      tr = h(
        "tr",
        { class: "event" },
        h("td", { class: "time", text: clock(item.ts) }),
        h("td", { class: "topic", text: item.topic }),
        h("td", { class: "type", text: item.type }),
        h("td", { class: "id", text: item.id }),
        h("td", { class: "data" }, details),
      );
    }
    const row = { item, tr, text: null };
    tr.hidden = !this.matches(row);
    return row;
  }

  matches(row) {
    if (!this.filter) return true;
    if (row.text === null) row.text = (row.item.name ? row.item.name + " " : "") + row.item.raw.toLowerCase();
    return row.text.includes(this.filter);
  }

  setFilter(text) {
    this.filter = text.trim().toLowerCase();
    for (const row of this.rows) row.tr.hidden = !this.matches(row);
    this.updateCounts();
  }

  clear() {
    for (const row of this.rows) row.tr.remove();
    this.rows = [];
    this.pending = [];
    this.held = [];
    this.heldCount = 0;
    this.received = 0;
    this.updateCounts();
  }

  shown() {
    return this.rows.filter((row) => this.matches(row));
  }

  updateCounts() {
    const shown = this.filter ? this.shown().length : this.rows.length;
    const parts = [`${shown} row${shown === 1 ? "" : "s"} shown (at most ${this.settings.maxRows})`, `${this.received} received`];
    if (this.paused) parts.push(`paused: ${this.heldCount} arrived since`);
    setText(this.counts, parts.join(" · "));
    setText(this.pauseButton, this.paused ? `Resume (${this.heldCount} new)` : "Pause");
  }

  /** What is shown (the filter applies), oldest first, as NDJSON: the server's own line format. */
  download() {
    const lines = this.shown().map(({ item }) =>
      item.kind === "control" ? JSON.stringify({ control: item.name, ...item.fields }) : item.raw,
    );
    const blob = new Blob(lines.map((line) => line + "\n"), { type: "application/x-ndjson" });
    const link = h("a", { href: URL.createObjectURL(blob), download: `broadcaster-${Date.now()}.ndjson` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  /** For tests and the curious: the inspector's state as data. */
  model() {
    return {
      state: this.stream ? this.stream.state : "idle",
      reconnects: this.stream ? this.stream.reconnects : 0,
      rows: this.rows.length,
      domRows: this.body.rows.length,
      received: this.received,
      paused: this.paused,
      held: this.heldCount,
      maxRows: this.settings.maxRows,
    };
  }
}
