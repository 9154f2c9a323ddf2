// The publish form: topic, type and a JSON editor; shows the new id or the server's error.
//
// The editor checks the JSON as it is typed, but the server has the last word: the
// form sends what is written, and shows the server's answer (its message names what
// was wrong), so the page never disagrees with the API about what is valid.
import { ApiError, apiUrl, request } from "./api.js";
import { clock, setText } from "./frames.js";

export class Publisher {
  constructor() {
    this.form = document.getElementById("publish-form");
    this.data = document.getElementById("publish-data");
    this.hint = document.getElementById("publish-validation");
    this.result = document.getElementById("publish-result");
    this.busy = false;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.publish();
    });
    this.data.addEventListener("input", () => this.validate());
    this.data.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        this.form.requestSubmit();
      }
    });
    document.getElementById("publish-format").addEventListener("click", () => {
      if (this.validate()) this.data.value = JSON.stringify(JSON.parse(this.data.value), null, 2);
    });
    this.validate();
  }

  /** Mark the editor valid or not; true when it holds one JSON value. */
  validate() {
    try {
      JSON.parse(this.data.value);
      this.data.removeAttribute("aria-invalid");
      setText(this.hint, "valid JSON");
      this.hint.dataset.state = "ok";
      return true;
    } catch (error) {
      this.data.setAttribute("aria-invalid", "true");
      setText(this.hint, `not valid JSON: ${error.message}`);
      this.hint.dataset.state = "failed";
      return false;
    }
  }

  show(text, state) {
    setText(this.result, text);
    this.result.dataset.state = state;
  }

  async publish() {
    if (this.busy) return;
    const fields = this.form.elements;
    const topic = fields.topic.value.trim();
    const type = fields.type.value.trim();
    const query = new URLSearchParams();
    if (type && type !== "message") query.set("type", type);
    this.busy = true;
    this.show("publishing…", "connecting");
    try {
      const response = await request(apiUrl(`topics/${encodeURIComponent(topic)}/events`, query), {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: this.data.value,
      });
      const answer = await response.json();
      this.show(`published ${answer.id} on ${answer.topic} at ${clock(answer.ts)}`, "ok");
      this.result.dataset.id = answer.id;
    } catch (error) {
      const why = error instanceof ApiError ? error.describe() : String(error);
      this.show(`refused: ${why}`, "failed");
      delete this.result.dataset.id;
    } finally {
      this.busy = false;
    }
  }

  /** Offer a topic chosen in the topics list, unless one is typed already. */
  useTopic(topic) {
    if (!this.form.elements.topic.value) this.form.elements.topic.value = topic;
  }
}
