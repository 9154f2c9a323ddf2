// The latest-value wall: one tile per topic (or per topic and series key) with its last value.
//
// It starts from what is retained: each chosen topic's last event (`tail=1`, read as a
// short NDJSON request that the server ends by itself), then one EventSource resumes
// after the newest of those ids, so nothing published in between is missed.
import { ApiError, apiUrl, readEvents } from "./api.js";
import { FieldIndex, numberAt, pathLabel, syncOptions, valueAt } from "./fields.js";
import { h, perFrame, setText, words } from "./frames.js";
import { Stream, showState } from "./stream.js";

const MAX_TILES = 48;
const SPLIT_TAIL = 200; // with a series key or a pattern, one event would show one tile only
const TAIL_WAIT_S = 0.5; // how long the tail request waits when fewer events are retained

function compareIds(a, b) {
  const [am, an] = a.split("-").map(Number);
  const [bm, bn] = b.split("-").map(Number);
  return am - bm || an - bn;
}

function age(ms) {
  const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  return `${Math.floor(seconds / 3600)} h ago`;
}

export class Latest {
  constructor() {
    this.form = document.getElementById("latest-form");
    this.stateLine = document.getElementById("latest-state");
    this.fieldSelect = document.getElementById("latest-field");
    this.splitSelect = document.getElementById("latest-split");
    this.wall = document.getElementById("latest-tiles");
    this.fields = new FieldIndex();
    this.tiles = new Map(); // key -> {item, element, parts}
    this.pending = new Map();
    this.stream = null;
    this.run = 0;
    this.schedule = perFrame(() => this.frame());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.subscribe();
    });
    document.getElementById("latest-stop").addEventListener("click", () => {
      this.run += 1;
      if (this.stream) this.stream.stop();
    });
    this.fieldSelect.addEventListener("change", () => this.redraw());
    this.splitSelect.addEventListener("change", () => this.redraw());
    setInterval(() => {
      for (const tile of this.tiles.values()) setText(tile.parts.age, age(tile.item.ts));
    }, 1000);
  }

  setState(text, state) {
    setText(this.stateLine, text);
    this.stateLine.dataset.state = state;
  }

  async subscribe() {
    const fields = this.form.elements;
    const selectors = words(fields.topics.value);
    if (!selectors.length) return;
    const run = ++this.run;
    if (this.stream) this.stream.close();
    this.stream = null;
    this.setState(`${selectors.join(" ")}: reading the last values…`, "connecting");
    let newest = null;
    try {
      const tails = await Promise.all(
        selectors.map((selector) => {
          const tail = String(this.splitSelect.value || selector.includes("*") ? SPLIT_TAIL : 1);
          const query = { topic: selector, tail, max_events: tail, max_duration: TAIL_WAIT_S, format: "ndjson" };
          return readEvents(apiUrl("events", new URLSearchParams(query)));
        }),
      );
      if (run !== this.run) return;
      for (const item of tails.flat()) {
        this.receive({ kind: "event", ...item });
        if (newest === null || compareIds(item.id, newest) > 0) newest = item.id;
      }
    } catch (error) {
      if (run !== this.run) return;
      const why = error instanceof ApiError ? error.describe() : String(error);
      this.setState(`${selectors.join(" ")}: refused: ${why}`, "failed");
      return;
    }
    this.stream = new Stream({
      selectors,
      types: words(fields.types.value),
      params: newest ? { last_event_id: newest } : {},
      onItem: (item) => item.kind === "event" && this.receive(item),
      onState: (stream) => showState(this.stateLine, stream),
    });
    this.stream.lastId = newest;
    this.stream.open();
  }

  get fieldPath() {
    return this.fieldSelect.value ? JSON.parse(this.fieldSelect.value) : null;
  }

  key(item) {
    const split = this.splitSelect.value ? JSON.parse(this.splitSelect.value) : null;
    const name = split === null ? undefined : valueAt(item.data, split);
    if (name === undefined || name === null) return [item.topic, item.topic];
    return [`${item.topic}\n${name}`, `${item.topic} · ${name}`];
  }

  receive(item) {
    this.fields.add(item.data);
    const [key] = this.key(item);
    this.pending.set(key, item);
    this.schedule();
  }

  /** Tiles again from each tile's last event (after a change of value field or split). */
  redraw() {
    const items = [...this.tiles.values()].map((tile) => tile.item);
    this.tiles.clear();
    this.wall.replaceChildren();
    for (const item of items) this.pending.set(this.key(item)[0], item);
    this.schedule();
  }

  frame() {
    if (this.fields.changed) {
      this.fields.changed = false;
      syncOptions(this.fieldSelect, this.fields.numeric, [["", "(the whole data)"]]);
      syncOptions(this.splitSelect, this.fields.keys, [["", "(topic)"]]);
    }
    for (const [key, item] of this.pending) this.show(key, item);
    this.pending.clear();
  }

  show(key, item) {
    let tile = this.tiles.get(key);
    if (!tile) {
      if (this.tiles.size >= MAX_TILES) return;
      const parts = {
        title: h("h3"),
        value: h("span", { class: "value" }),
        unit: h("span", { class: "unit" }),
        meta: h("span", { class: "meta muted" }),
        age: h("time", { class: "muted" }),
      };
      const element = h("article", { class: "tile" }, parts.title, h("p", {}, parts.value, " ", parts.unit), h("p", { class: "small" }, parts.meta, " · ", parts.age));
      tile = { item, element, parts };
      this.tiles.set(key, tile);
      const after = [...this.tiles.keys()].sort().find((other) => other > key);
      this.wall.insertBefore(element, after ? this.tiles.get(after).element : null);
    }
    tile.item = item;
    const field = this.fieldPath;
    const { parts } = tile;
    setText(parts.title, this.key(item)[1]);
    if (field === null) {
      const text = typeof item.data === "string" ? item.data : JSON.stringify(item.data);
      setText(parts.value, text.length > 80 ? `${text.slice(0, 80)}…` : text);
      setText(parts.unit, "");
    } else {
      const value = numberAt(item.data, field);
      setText(parts.value, value === null ? "—" : String(value));
      const unit = valueAt(item.data, [...field.slice(0, -1), "unit"]);
      setText(parts.unit, typeof unit === "string" ? unit : field.length ? pathLabel(field) : "");
    }
    setText(parts.meta, `${item.type} · ${item.id}`);
    setText(parts.age, age(item.ts));
    tile.element.setAttribute("aria-label", `${parts.title.textContent}: ${parts.value.textContent} ${parts.unit.textContent}`);
  }

  /** For tests and the curious: the tiles as data. */
  model() {
    return [...this.tiles.values()].map(({ parts, item }) => ({
      title: parts.title.textContent,
      value: parts.value.textContent,
      unit: parts.unit.textContent,
      id: item.id,
    }));
  }
}
