// The dashboard's entry point: settings, tabs, the access notice, and the panels wired together.
import { Access } from "./access.js";
import { onAccessError } from "./api.js";
import { Charts } from "./charts.js";
import { setText } from "./frames.js";
import { Inspector } from "./inspector.js";
import { Latest } from "./latest.js";
import { Publisher } from "./publish.js";
import { TopicsList } from "./topics.js";

const STORE_KEY = "broadcaster.ui.settings";
/** The page's bounds: [default, lowest, highest]. */
const BOUNDS = { maxRows: [500, 10, 5000], maxPoints: [2000, 50, 20000], windowS: [120, 5, 3600] };

function clamp(name, value) {
  const [fallback, low, high] = BOUNDS[name];
  const number = Math.round(Number(value));
  return Number.isFinite(number) && value !== "" ? Math.min(high, Math.max(low, number)) : fallback;
}

function loadSettings() {
  let stored = {};
  try {
    stored = JSON.parse(localStorage.getItem(STORE_KEY) || "{}");
  } catch {
    // unreadable or unavailable storage: the defaults
  }
  return Object.fromEntries(Object.keys(BOUNDS).map((name) => [name, clamp(name, stored[name] ?? "")]));
}

function bindSettings(settings, onChange) {
  const form = document.getElementById("settings-form");
  for (const name of Object.keys(BOUNDS)) {
    const input = form.elements[name];
    input.value = settings[name];
    input.addEventListener("change", () => {
      settings[name] = clamp(name, input.value);
      input.value = settings[name];
      try {
        localStorage.setItem(STORE_KEY, JSON.stringify(settings));
      } catch {
        // storage may be unavailable (private mode): the setting holds for this page
      }
      onChange(name);
    });
  }
}

/** ARIA tabs: arrows, Home and End move between tabs; the URL's #hash names the open one. */
class Tabs {
  constructor() {
    this.tabs = [...document.querySelectorAll('[role="tab"]')];
    for (const tab of this.tabs) {
      tab.addEventListener("click", () => this.select(tab.id.slice(4)));
      tab.addEventListener("keydown", (event) => this.key(event, tab));
    }
    window.addEventListener("hashchange", () => this.fromHash());
    this.fromHash();
  }

  fromHash() {
    const name = location.hash.slice(1);
    if (this.tabs.some((tab) => tab.id === `tab-${name}`)) this.select(name, false);
  }

  select(name, focus = false) {
    for (const tab of this.tabs) {
      const chosen = tab.id === `tab-${name}`;
      tab.setAttribute("aria-selected", String(chosen));
      tab.tabIndex = chosen ? 0 : -1;
      document.getElementById(tab.getAttribute("aria-controls")).hidden = !chosen;
      if (chosen && focus) tab.focus();
    }
    if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  }

  key(event, tab) {
    const index = this.tabs.indexOf(tab);
    const last = this.tabs.length - 1;
    const next = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: last }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    const target = this.tabs[(next + this.tabs.length) % this.tabs.length];
    this.select(target.id.slice(4), true);
  }
}

function showNotice(text) {
  const notice = document.getElementById("notice");
  setText(document.getElementById("notice-text"), text || "");
  notice.hidden = !text;
}

const settings = loadSettings();
const tabs = new Tabs();
const inspector = new Inspector(settings);
const charts = new Charts(settings);
const latest = new Latest();
const publisher = new Publisher();
const serverStatus = document.getElementById("server-status");
const topics = new TopicsList(
  (topic) => {
    tabs.select("inspector");
    inspector.openTopic(topic);
    publisher.useTopic(topic);
  },
  (error, access) => {
    if (!error) accessControl.seen(access);
    setText(serverStatus, error ? (error.status ? `server refused: ${error.status}` : "server unreachable") : "server connected");
    serverStatus.dataset.state = error ? "failed" : "ok";
  },
);

const accessControl = new Access(showNotice, () => {
  // A new session cookie: list the topics it may see and reopen the streams it refused.
  topics.refresh();
  for (const panel of [inspector, charts, latest]) if (panel.stream) panel.stream.reopen();
});

document.getElementById("notice-dismiss").addEventListener("click", () => showNotice(""));
// 401: this page has no (valid) credential; 403: a grant is missing (the message names the topic).
onAccessError((error) => accessControl.refused(error));

bindSettings(settings, (name) => {
  if (name === "maxRows") inspector.flush();
  else charts.replot();
});
topics.start();

// For tests and for the console: the panels' state as data (`broadcasterUI.charts.model()`).
window.broadcasterUI = { settings, tabs, topics, inspector, charts, latest, publisher, access: accessControl };
