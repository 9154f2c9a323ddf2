// A long list of fixed-height rows of which only those on screen exist in the DOM.
//
// At 1000 events/s a list of 500 real rows costs the browser a layout, a style pass and a
// paint of hundreds of new elements per frame (measured: about a third of a core). Here
// the DOM holds a pool of about a screenful of rows, refilled in order (DOM order is the
// display order), inside a spacer as tall as the whole list, so the work of a frame is
// bounded by the viewport's height, not by the number of rows held.
import { perFrame } from "./frames.js";

const OVERSCAN = 4; // rows built above and below the visible ones

export class RowList {
  /**
   * @param viewport the scrolling element
   * @param canvas its child that the rows go into (sized to the whole list)
   * @param build () => a new, empty row element
   * @param fill (element, item) => void: show `item` in `element`
   */
  constructor(viewport, canvas, { build, fill }) {
    this.viewport = viewport;
    this.canvas = canvas;
    this.build = build;
    this.fill = fill;
    this.count = 0;
    this.itemAt = () => null;
    this.rowPx = 30;
    this.schedule = perFrame(() => this.render());
    viewport.addEventListener("scroll", () => this.schedule(), { passive: true });
    new ResizeObserver(() => {
      this.measure();
      this.schedule();
    }).observe(viewport);
    this.measure();
  }

  /** The row height comes from the style sheet (`--row-px`), which changes it at a phone's width. */
  measure() {
    this.rowPx = Number.parseFloat(getComputedStyle(this.viewport).getPropertyValue("--row-px")) || 30;
  }

  /**
   * The list changed: `count` items, `itemAt(i)` the item shown at position i (0 on top).
   * `shifted` items were added above: a reader scrolled down keeps seeing the same rows.
   */
  update(count, itemAt, shifted = 0) {
    this.count = count;
    this.itemAt = itemAt;
    if (shifted && this.viewport.scrollTop > 0) this.viewport.scrollTop += shifted * this.rowPx;
    this.render();
  }

  render() {
    const { rowPx, count } = this;
    const top = this.viewport.scrollTop;
    const first = Math.max(0, Math.floor(top / rowPx) - OVERSCAN);
    const last = Math.min(count, Math.ceil((top + this.viewport.clientHeight) / rowPx) + OVERSCAN);
    const wanted = Math.max(0, last - first);
    const rows = this.canvas.children;
    while (rows.length < wanted) this.canvas.append(this.build());
    while (rows.length > wanted) this.canvas.lastElementChild.remove();
    this.canvas.style.height = `${count * rowPx}px`;
    this.canvas.style.paddingTop = `${first * rowPx}px`;
    for (let k = 0; k < wanted; k++) {
      const element = rows[k];
      const item = this.itemAt(first + k);
      if (element.item !== item) {
        element.item = item;
        this.fill(element, item);
      }
    }
  }

  /** Scroll so that position `index` is visible. */
  reveal(index) {
    const top = index * this.rowPx;
    const bottom = top + this.rowPx;
    if (top < this.viewport.scrollTop) this.viewport.scrollTop = top;
    else if (bottom > this.viewport.scrollTop + this.viewport.clientHeight) {
      this.viewport.scrollTop = bottom - this.viewport.clientHeight;
    }
    this.render();
  }
}
