// Access control on the page: ask for a token and exchange it through `POST /auth/session`
// for the session cookie (HttpOnly, SameSite=Strict) that EventSource sends, since a page
// cannot give EventSource an Authorization header. The token itself is kept nowhere.
//
// The page asks when `GET /topics` answers `access: "anonymous"` (access control on, no
// token sent) and with every 401 or 403 (the server's message names the topic); after a
// new session the topics are listed again and refused streams reopen.
import { apiUrl, request } from "./api.js";

export class Access {
  /**
   * @param showNotice (text) => void: the page's notice line ("" hides the notice)
   * @param onSession () => void: called once the cookie is set
   */
  constructor(showNotice, onSession) {
    this.showNotice = showNotice;
    this.onSession = onSession;
    this.form = document.getElementById("token-form");
    this.input = document.getElementById("token-input");
    this.state = "unknown"; // the last `access` of GET /topics: off, anonymous, token
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  /** The `access` field of a `GET /topics` answer. */
  seen(access) {
    const before = this.state;
    this.state = access || "off";
    // Asks once each time the page finds itself without a token (first load, an expired cookie).
    if (this.state === "anonymous" && before !== "anonymous") {
      this.ask("This server has access control on: enter a token to see its topics and streams.");
    }
  }

  /** A 401 or 403 the page received: show the server's message, which names the topic. */
  refused(error) {
    const what = error.status === 401 ? "The server needs a token" : "Not allowed";
    this.ask(`${what}: ${error.describe()}`);
  }

  ask(text) {
    this.showNotice(text);
    this.form.hidden = false;
  }

  async submit() {
    const token = this.input.value.trim();
    if (!token) return;
    try {
      await request(apiUrl("auth/session"), { method: "POST", headers: { Authorization: `Bearer ${token}` } });
    } catch (error) {
      this.ask(`The token was refused: ${error.describe ? error.describe() : error}`);
      return;
    }
    this.input.value = "";
    this.form.hidden = true;
    this.showNotice("");
    this.onSession();
  }

  /** For tests: what the page knows about access. */
  model() {
    return { state: this.state, asking: !this.form.hidden };
  }
}
