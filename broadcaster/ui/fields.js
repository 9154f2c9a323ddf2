// Fields of events' data, found as events arrive: numbers to plot, strings to split series by.
//
// A path is a list of keys (`["reading", "value"]`), shown joined by dots and kept as
// JSON in <select> values, so that keys containing dots stay unambiguous. The data
// itself, when it is a plain number, is the path [] ("(the value)").

const MAX_DEPTH = 4;
const MAX_FIELDS = 64;
const MAX_KEY_LENGTH = 80; // longer strings are not series names

export function pathLabel(path) {
  return path.length ? path.join(".") : "(the value)";
}

/** The value at `path` in `data`, or undefined. */
export function valueAt(data, path) {
  let value = data;
  for (const key of path) {
    if (value === null || typeof value !== "object") return undefined;
    value = value[key];
  }
  return value;
}

/** A number at `path`, or null (numeric strings count: many producers send "21.5"). */
export function numberAt(data, path) {
  const value = valueAt(data, path);
  if (typeof value === "number") return Number.isFinite(value) ? value : null;
  if (typeof value === "string" && value.trim() !== "" && Number.isFinite(Number(value))) return Number(value);
  return null;
}

/** The fields seen so far in events' data: numeric paths and short-string ("key") paths. */
export class FieldIndex {
  constructor() {
    this.numeric = new Map(); // JSON path -> path
    this.keys = new Map();
    this.changed = false;
  }

  /** Record the fields of one event's data; sets `changed` when a new field appears. */
  add(data) {
    if (this.numeric.size + this.keys.size >= MAX_FIELDS) return;
    this.walk(data, [], 0);
  }

  walk(value, path, depth) {
    if (typeof value === "number") {
      this.note(this.numeric, path);
    } else if (typeof value === "string" || typeof value === "boolean") {
      if (String(value).length <= MAX_KEY_LENGTH && path.length) this.note(this.keys, path);
    } else if (value && typeof value === "object" && !Array.isArray(value) && depth < MAX_DEPTH) {
      for (const key of Object.keys(value)) this.walk(value[key], [...path, key], depth + 1);
    }
  }

  note(map, path) {
    const id = JSON.stringify(path);
    if (!map.has(id)) {
      map.set(id, path);
      this.changed = true;
    }
  }

  clear() {
    this.numeric.clear();
    this.keys.clear();
    this.changed = true;
  }
}

/**
 * Keep a <select>'s options equal to `paths` (after the fixed first options), keeping the choice.
 * With `preferred` (labels), a field is chosen while the choice is "": the first preferred one found, else the first.
 */
export function syncOptions(select, paths, fixed, preferred = []) {
  const chosen = select.value;
  const found = [...paths.entries()].map(([id, path]) => [id, pathLabel(path)]);
  found.sort((a, b) => a[1].localeCompare(b[1]));
  const wanted = [...fixed, ...found];
  const current = [...select.options].map((option) => option.value);
  if (current.join("\n") !== wanted.map(([id]) => id).join("\n")) {
    select.replaceChildren(...wanted.map(([id, label]) => new Option(label, id)));
  }
  if ([...select.options].some((option) => option.value === chosen)) {
    select.value = chosen;
  }
  if (preferred.length && !select.value && found.length) {
    const match = preferred.map((label) => found.find(([, text]) => text === label)).find(Boolean);
    select.value = (match || found[0])[0];
  }
  return select.value;
}
