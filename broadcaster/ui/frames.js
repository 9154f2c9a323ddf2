// DOM work once per animation frame: events arrive far faster than a screen repaints.

/** A function that schedules `flush` for the next animation frame, at most once per frame. */
export function perFrame(flush) {
  let scheduled = false;
  const run = () => {
    scheduled = false;
    flush();
  };
  return () => {
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(run);
    }
  };
}

/** The words of a "topics and patterns" or "types" box: split on spaces and commas, deduplicated. */
export function words(text) {
  return [...new Set(text.split(/[\s,]+/).filter(Boolean))];
}

/** "12:04:05.123" in local time, for an epoch in milliseconds. */
export function clock(ms) {
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** An element with attributes and children (strings become text nodes). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") element.className = value;
    else if (name === "text") element.textContent = value;
    else if (value !== undefined && value !== null && value !== false) element.setAttribute(name, value);
  }
  element.append(...children);
  return element;
}

/** Set an element's text only when it changed (no layout work for equal values). */
export function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}
