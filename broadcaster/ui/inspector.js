// The inspector: a live table of the events and control messages of chosen topics and patterns.
//
// Bounded: at most `settings.maxRows` rows exist (in the DOM and in memory); events that
// arrive faster than frames are painted wait in a buffer of the same bound, so a burst
// costs one DOM update per frame, and rows that would be removed before ever being seen
// are never built. Only the rows on screen are in the DOM (rowlist.js); the row chosen
// with a click or the arrow keys shows its data, pretty-printed, below the list.
import { clock, h, perFrame, setText, words } from "./frames.js";
import { RowList } from "./rowlist.js";
import { Stream, showState } from "./stream.js";

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
    this.viewport = document.getElementById("inspector-viewport");
    this.stateLine = document.getElementById("inspector-state");
    this.counts = document.getElementById("inspector-counts");
    this.pauseButton = document.getElementById("inspector-pause");
    this.filterBox = document.getElementById("inspector-filter");
    this.detailTitle = document.getElementById("inspector-detail-title");
    this.detailData = document.getElementById("inspector-detail-data");
    this.stream = null;
    this.rows = []; // oldest first: {item, text, summary, gone}
    this.view = []; // the rows the filter keeps, oldest first; shown newest first
    this.pending = []; // waiting for the next frame
    this.held = []; // arrived while paused (the newest maxRows of them)
    this.heldCount = 0;
    this.received = 0;
    this.paused = false;
    this.filter = "";
    this.selected = null;
    this.schedule = perFrame(() => this.flush());
    this.list = new RowList(this.viewport, document.getElementById("inspector-rows"), {
      build: () => this.buildRow(),
      fill: (element, row) => this.fillRow(element, row),
    });

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
    this.viewport.addEventListener("click", (event) => {
      const element = event.target.closest(".row");
      if (element && element.item) this.select(element.item);
    });
    this.viewport.addEventListener("keydown", (event) => this.key(event));
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
    showState(this.stateLine, stream);
  }

  receive(item) {
    this.received += 1;
    if (item.kind === "control") item.at = Date.now(); // controls carry no time of their own
    const max = this.settings.maxRows;
    const buffer = this.paused ? this.held : this.pending;
    if (this.paused) this.heldCount += 1;
    buffer.push(item);
    if (buffer.length > max * 2) buffer.splice(0, buffer.length - max);
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
    let shown = 0;
    for (const item of items) {
      const row = { item, text: null, summary: null, gone: false };
      this.rows.push(row);
      if (this.matches(row)) {
        this.view.push(row);
        shown += 1;
      }
    }
    this.trim();
    this.refresh(shown);
  }

  trim() {
    const excess = this.rows.length - this.settings.maxRows;
    if (excess <= 0) return;
    for (const row of this.rows.splice(0, excess)) row.gone = true;
    let cut = 0;
    while (cut < this.view.length && this.view[cut].gone) cut++;
    if (cut) this.view.splice(0, cut);
  }

  /** Show the view again; `added` rows came on top since the last time. */
  refresh(added = 0) {
    const view = this.view;
    this.list.update(view.length, (index) => view[view.length - 1 - index], added);
    this.updateCounts();
  }

  buildRow() {
    const cell = (name) => h("span", { class: name, role: "cell" });
    return h("div", { class: "row", role: "row" }, cell("time"), cell("topic"), cell("type"), cell("id"), cell("data"));
  }

  fillRow(element, row) {
    const { item } = row;
    const [time, topic, type, id, data] = element.children;
    if (item.kind === "control") {
      element.className = `row control control-${item.name}`;
      setText(time, clock(item.at));
      setText(topic, "(stream)");
      setText(type, item.name);
      setText(id, item.fields.last_id || item.fields.last_event_id || "");
      if (row.summary === null) row.summary = describeControl(item.name, item.fields);
    } else {
      element.className = "row event";
      setText(time, clock(item.ts));
      setText(topic, item.topic);
      setText(type, item.type);
      setText(id, item.id);
      if (row.summary === null) row.summary = summary(item.data);
    }
    setText(data, row.summary);
    element.setAttribute("aria-selected", String(row === this.selected));
  }

  select(row) {
    this.selected = row;
    const { item } = row;
    const title = item.kind === "control" ? `control message ${item.name}` : `${item.topic} · ${item.type} · ${item.id}`;
    setText(this.detailTitle, title);
    setText(this.detailData, JSON.stringify(item.kind === "control" ? item.fields : item.data, null, 2));
    for (const element of this.list.canvas.children) element.setAttribute("aria-selected", String(element.item === row));
  }

  key(event) {
    const view = this.view;
    if (!view.length) return;
    const current = this.selected ? view.length - 1 - view.indexOf(this.selected) : -1;
    const page = Math.max(1, Math.floor(this.viewport.clientHeight / this.list.rowPx) - 1);
    const moves = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page };
    let index;
    if (event.key in moves) index = current < 0 || current >= view.length ? 0 : current + moves[event.key];
    else if (event.key === "Home") index = 0;
    else if (event.key === "End") index = view.length - 1;
    else return;
    event.preventDefault();
    index = Math.min(view.length - 1, Math.max(0, index));
    this.select(view[view.length - 1 - index]);
    this.list.reveal(index);
  }

  matches(row) {
    if (!this.filter) return true;
    if (row.text === null) row.text = (row.item.name ? row.item.name + " " : "") + row.item.raw.toLowerCase();
    return row.text.includes(this.filter);
  }

  setFilter(text) {
    this.filter = text.trim().toLowerCase();
    this.view = this.rows.filter((row) => this.matches(row));
    this.refresh();
  }

  clear() {
    this.rows = [];
    this.view = [];
    this.pending = [];
    this.held = [];
    this.heldCount = 0;
    this.received = 0;
    this.refresh();
  }

  updateCounts() {
    const shown = this.view.length;
    const parts = [`${shown} row${shown === 1 ? "" : "s"} shown (at most ${this.settings.maxRows})`, `${this.received} received`];
    if (this.paused) parts.push(`paused: ${this.heldCount} arrived since`);
    setText(this.counts, parts.join(" · "));
    setText(this.pauseButton, this.paused ? `Resume (${this.heldCount} new)` : "Pause");
  }

  /** What is shown (the filter applies), oldest first, as NDJSON: the server's own line format. */
  download() {
    const lines = this.view.map(({ item }) =>
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
      shown: this.view.length,
      domRows: this.list.canvas.childElementCount,
      received: this.received,
      paused: this.paused,
      held: this.heldCount,
      maxRows: this.settings.maxRows,
    };
  }

  /** The rows shown, newest first, as data: kind, control name or topic and type, id, data text. */
  shownRows() {
    return this.view.map(({ item }) => ({
      kind: item.kind,
      name: item.name,
      topic: item.topic,
      type: item.type,
      id: item.id,
      fields: item.fields,
    })).reverse();
  }
}
