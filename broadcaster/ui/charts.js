// The charts panel: numeric fields found in the events, one line per series, the last minutes.
//
// Bounded: the recent events kept for re-plotting after a change of field are at most
// `maxPoints` x MAX_SERIES (and MAX_RECENT); each series holds at most `maxPoints` points inside the time
// window; at most MAX_SERIES series are drawn. Drawing happens once per frame at most.
import { LineChart } from "./chart.js";
import { FieldIndex, numberAt, pathLabel, syncOptions, valueAt } from "./fields.js";
import { h, perFrame, words } from "./frames.js";
import { Stream, showState } from "./stream.js";

const MAX_SERIES = 16;
const MAX_RECENT = 50000; // events kept to re-plot after a change of field or series key
const MIN_SPAN_MS = 5000; // a chart of a few seconds of data spans at least this
const TOPIC = "@topic"; // "series by" the event's topic

export class Charts {
  constructor(settings) {
    this.settings = settings;
    this.form = document.getElementById("charts-form");
    this.stateLine = document.getElementById("charts-state");
    this.fieldSelect = document.getElementById("charts-field");
    this.seriesSelect = document.getElementById("charts-series");
    this.legend = document.getElementById("charts-legend");
    this.chart = new LineChart(document.getElementById("charts-canvas"), () => this.schedule());
    this.fields = new FieldIndex();
    this.recent = [];
    this.series = new Map();
    this.field = null;
    this.by = null;
    this.ignored = 0;
    this.offsetMs = Infinity; // the least (local clock - event ts) seen: network delay plus clock skew
    this.stream = null;
    this.schedule = perFrame(() => this.frame());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.subscribe();
    });
    document.getElementById("charts-stop").addEventListener("click", () => this.stream && this.stream.stop());
    this.fieldSelect.addEventListener("change", () => this.replot());
    this.seriesSelect.addEventListener("change", () => this.replot());
    // The time axis moves on while nothing arrives.
    setInterval(() => this.stream && this.stream.state === "open" && this.schedule(), 1000);
  }

  subscribe() {
    const fields = this.form.elements;
    const selectors = words(fields.topics.value);
    if (!selectors.length) return;
    if (this.stream) this.stream.close();
    this.recent = [];
    this.fields.clear();
    this.replot();
    const tail = Number(fields.tail.value);
    this.stream = new Stream({
      selectors,
      types: words(fields.types.value),
      params: tail ? { tail } : {},
      onItem: (item) => item.kind === "event" && this.receive(item),
      onState: (stream) => showState(this.stateLine, stream),
    });
    this.stream.open();
  }

  /** The chosen field's path (null: none yet) and series key (null: one series; TOPIC; or a path). */
  chosen() {
    const field = this.fieldSelect.value ? JSON.parse(this.fieldSelect.value) : null;
    const value = this.seriesSelect.value;
    return [field, value && value !== TOPIC ? JSON.parse(value) : value || null];
  }

  receive(item) {
    this.offsetMs = Math.min(this.offsetMs, Date.now() - item.ts);
    const point = { ts: item.ts, topic: item.topic, data: item.data };
    this.recent.push(point);
    const keep = Math.min(this.settings.maxPoints * MAX_SERIES, MAX_RECENT);
    if (this.recent.length > keep * 1.25) this.recent.splice(0, this.recent.length - keep);
    this.fields.add(item.data);
    this.plot(point, this.field, this.by);
    this.schedule();
  }

  plot(point, field, by) {
    if (field === null) return;
    const value = numberAt(point.data, field);
    if (value === null) return;
    const name = by === null ? pathLabel(field) : by === TOPIC ? point.topic : String(valueAt(point.data, by) ?? "(none)");
    let line = this.series.get(name);
    if (!line) {
      if (this.series.size >= MAX_SERIES) {
        this.ignored += 1;
        return;
      }
      line = { name, color: this.chart.color(this.series.size), t: [], v: [] };
      this.series.set(name, line);
      this.legendChanged = true;
    }
    line.t.push(point.ts);
    line.v.push(value);
    const max = this.settings.maxPoints;
    if (line.t.length > max + Math.max(16, max >> 3)) {
      line.t.splice(0, line.t.length - max);
      line.v.splice(0, line.v.length - max);
    }
  }

  /** Rebuild every series from the recent events (after a change of field or series key). */
  replot() {
    this.series = new Map();
    this.ignored = 0;
    this.legendChanged = true;
    [this.field, this.by] = this.chosen();
    for (const point of this.recent) this.plot(point, this.field, this.by);
    this.schedule();
  }

  /** The time range drawn: the last `windowS` seconds, or since the oldest point if that is shorter. */
  get window() {
    const end = Date.now() - (Number.isFinite(this.offsetMs) ? this.offsetMs : 0);
    let oldest = end;
    for (const line of this.series.values()) if (line.t.length) oldest = Math.min(oldest, line.t[0]);
    return [Math.max(end - this.settings.windowS * 1000, Math.min(oldest, end - MIN_SPAN_MS)), end];
  }

  frame() {
    if (this.fields.changed) {
      this.fields.changed = false;
      const before = this.fieldSelect.value + "\n" + this.seriesSelect.value;
      syncOptions(this.fieldSelect, this.fields.numeric, [["", "(choose a field)"]], ["value"]);
      syncOptions(this.seriesSelect, this.fields.keys, [["", "(one series)"], [TOPIC, "topic"]]);
      if (before !== this.fieldSelect.value + "\n" + this.seriesSelect.value) this.replot();
    }
    const [start, end] = this.window;
    for (const line of this.series.values()) {
      let old = 0;
      while (old < line.t.length && line.t[old] < start) old++;
      if (old > 64) {
        line.t.splice(0, old - 1); // keep one point left of the window: the line enters from the edge
        line.v.splice(0, old - 1);
      }
    }
    const empty = this.field === null ? "no numeric field yet" : "no data in the window";
    this.chart.draw([...this.series.values()], start, end, empty);
    if (this.legendChanged) this.drawLegend();
  }

  drawLegend() {
    this.legendChanged = false;
    const items = [...this.series.values()].map((line) => {
      const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
      swatch.style.backgroundColor = line.color;
      return h("li", {}, swatch, line.name);
    });
    if (this.ignored) items.push(h("li", { class: "muted", text: `more than ${MAX_SERIES} series: the rest are not drawn` }));
    this.legend.replaceChildren(...items);
  }

  /** For tests and the curious: what the chart draws, as data. */
  model() {
    const label = (select) => select.selectedOptions[0]?.textContent ?? "";
    return {
      state: this.stream ? this.stream.state : "idle",
      field: label(this.fieldSelect),
      seriesBy: label(this.seriesSelect),
      fields: [...this.fields.numeric.values()].map(pathLabel),
      keys: [...this.fields.keys.values()].map(pathLabel),
      series: [...this.series.values()].map((line) => ({
        name: line.name,
        color: line.color,
        points: line.t.length,
        last: line.v.at(-1),
      })),
      window: this.window,
    };
  }
}
