// The topics list: `GET /topics` every couple of seconds, updated in place (no flicker).
//
// Rows are keyed by topic and only the cells whose text changed are written, so the
// list does not jump, keeps its focus and keeps its scroll position. Up and down
// arrows move between topics; Enter (or a click) opens one in the inspector.
import { ApiError, apiUrl, getJSON } from "./api.js";
import { clock, h, setText } from "./frames.js";

const REFRESH_MS = 2000;

function globRegex(pattern) {
  const parts = pattern.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${parts.join(".*")}$`, "i");
}

export class TopicsList {
  constructor(onOpen, onStatus) {
    this.onOpen = onOpen;
    this.onStatus = onStatus;
    this.body = document.querySelector("#topics-table tbody");
    this.status = document.getElementById("topics-status");
    this.filterBox = document.getElementById("topics-filter");
    this.known = document.getElementById("known-topics");
    this.rows = new Map(); // topic -> {tr, cells}
    this.topics = [];
    this.timer = null;
    this.filterBox.addEventListener("input", () => this.applyFilter());
    this.body.addEventListener("keydown", (event) => this.move(event));
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) this.refresh();
    });
  }

  start() {
    this.refresh();
  }

  async refresh() {
    if (this.inFlight) return;
    this.inFlight = true;
    clearTimeout(this.timer);
    try {
      const answer = await getJSON(apiUrl("topics"));
      this.topics = answer.topics;
      this.render();
      setText(this.status, `${this.topics.length} topic${this.topics.length === 1 ? "" : "s"} · updated ${clock(Date.now()).slice(0, 8)}`);
      this.status.dataset.state = "ok";
      this.onStatus(null, answer.access);
    } catch (error) {
      const why = error instanceof ApiError ? error.describe() : String(error);
      setText(this.status, `cannot list topics: ${why}`);
      this.status.dataset.state = "failed";
      this.onStatus(error);
    } finally {
      this.inFlight = false;
    }
    // Polling pauses in a hidden tab and resumes when it is shown again.
    if (!document.hidden) this.timer = setTimeout(() => this.refresh(), REFRESH_MS);
  }

  render() {
    const seen = new Set();
    let previous = null;
    for (const info of this.topics) {
      seen.add(info.topic);
      let row = this.rows.get(info.topic);
      if (!row) {
        row = this.makeRow(info.topic);
        this.rows.set(info.topic, row);
        this.known.append(row.option);
      }
      // Keep the server's (sorted) order, moving a row only when it is out of place.
      const expected = previous ? previous.tr.nextElementSibling : this.body.firstElementChild;
      if (expected !== row.tr) this.body.insertBefore(row.tr, expected);
      previous = row;
      setText(row.cells.subscribers, String(info.subscribers));
      setText(row.cells.rate, info.events_per_s.toFixed(info.events_per_s < 10 ? 1 : 0));
      setText(row.cells.retained, info.retained === null || info.retained === undefined ? "—" : String(info.retained));
      setText(row.cells.last, info.last_id ? `last ${info.last_id}` : "");
    }
    for (const [topic, row] of this.rows) {
      if (!seen.has(topic)) {
        row.tr.remove();
        row.option.remove();
        this.rows.delete(topic);
      }
    }
    this.applyFilter();
  }

  makeRow(topic) {
    const open = h("button", { type: "button", class: "link", text: topic, title: `inspect ${topic}` });
    open.addEventListener("click", () => this.onOpen(topic));
    const cells = {
      subscribers: h("td", { class: "num" }),
      rate: h("td", { class: "num" }),
      retained: h("td", { class: "num" }),
      last: h("span", { class: "id muted" }),
    };
    const name = h("th", { scope: "row" }, open, cells.last);
    const tr = h("tr", { "data-topic": topic }, name, cells.subscribers, cells.rate, cells.retained);
    return { tr, cells, button: open, option: h("option", { value: topic }) };
  }

  applyFilter() {
    const text = this.filterBox.value.trim();
    const match = text.includes("*") ? globRegex(text) : null;
    const lower = text.toLowerCase();
    for (const [topic, row] of this.rows) {
      row.tr.hidden = Boolean(text) && !(match ? match.test(topic) : topic.toLowerCase().includes(lower));
    }
  }

  move(event) {
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    const buttons = [...this.body.querySelectorAll("tr:not([hidden]) button")];
    const index = buttons.indexOf(document.activeElement);
    if (index < 0) return;
    event.preventDefault();
    const next = buttons[index + (event.key === "ArrowDown" ? 1 : -1)];
    if (next) next.focus();
  }
}
