// A small line chart on a <canvas>: time on x, one line per series, axes with round ticks.
//
// Colours come from CSS custom properties (--chart-*, --series-N), so the chart follows
// the light and dark themes. A series with more points than the plot has pixel columns
// is drawn as one min-max stroke per column: the cost of a frame is bounded by the width.

const PAD = { left: 58, right: 14, top: 10, bottom: 26 };
const TIME_STEPS_MS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600].map((s) => s * 1000);

function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
}

function formatNumber(value, step) {
  const decimals = Math.max(0, Math.min(6, -Math.floor(Math.log10(step))));
  return value.toFixed(decimals);
}

function formatTime(ms, stepMs) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return stepMs >= 60000 ? hms.slice(0, 5) : hms;
}

export class LineChart {
  constructor(canvas, onResize) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.width = 0;
    this.height = 0;
    new ResizeObserver(() => {
      this.resize();
      if (onResize) onResize();
    }).observe(canvas);
    this.resize();
  }

  resize() {
    const ratio = window.devicePixelRatio || 1;
    const rect = this.canvas.getBoundingClientRect();
    this.width = Math.max(1, Math.floor(rect.width));
    this.height = Math.max(1, Math.floor(rect.height));
    this.canvas.width = Math.round(this.width * ratio);
    this.canvas.height = Math.round(this.height * ratio);
    this.context.setTransform(ratio, 0, 0, ratio, 0, 0);
  }

  /** The colour of series number `index`, from the theme. */
  color(index) {
    const style = getComputedStyle(this.canvas);
    const count = Number(style.getPropertyValue("--series-count")) || 8;
    return style.getPropertyValue(`--series-${index % count}`).trim() || "#2563eb";
  }

  /**
   * Draw `series` ([{name, color, t: [ms], v: [number]}]) over [xMin, xMax] (ms).
   * `empty` is the message shown when there is nothing to draw.
   */
  draw(series, xMin, xMax, empty = "no data yet") {
    const ctx = this.context;
    const style = getComputedStyle(this.canvas);
    const ink = style.getPropertyValue("--chart-ink").trim() || "#444";
    const grid = style.getPropertyValue("--chart-grid").trim() || "#ddd";
    const { width, height } = this;
    const plotW = width - PAD.left - PAD.right;
    const plotH = height - PAD.top - PAD.bottom;
    ctx.clearRect(0, 0, width, height);
    ctx.font = "12px system-ui, sans-serif";
    if (plotW < 20 || plotH < 20) return;

    let yMin = Infinity;
    let yMax = -Infinity;
    for (const line of series) {
      for (let i = 0; i < line.t.length; i++) {
        if (line.t[i] < xMin) continue;
        const v = line.v[i];
        if (v < yMin) yMin = v;
        if (v > yMax) yMax = v;
      }
    }
    if (yMin === Infinity) {
      ctx.fillStyle = ink;
      ctx.textAlign = "center";
      ctx.fillText(empty, PAD.left + plotW / 2, PAD.top + plotH / 2);
      return;
    }
    if (yMin === yMax) {
      yMin -= 1;
      yMax += 1;
    }
    const yStep = niceStep(yMax - yMin, Math.max(2, Math.floor(plotH / 48)));
    yMin = Math.floor(yMin / yStep) * yStep;
    yMax = Math.ceil(yMax / yStep) * yStep;
    const x = (t) => PAD.left + ((t - xMin) / (xMax - xMin || 1)) * plotW;
    const y = (v) => PAD.top + plotH - ((v - yMin) / (yMax - yMin)) * plotH;

    // Grid and y axis labels.
    ctx.strokeStyle = grid;
    ctx.fillStyle = ink;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.beginPath();
    for (let v = yMin; v <= yMax + yStep / 2; v += yStep) {
      const py = Math.round(y(v)) + 0.5;
      ctx.moveTo(PAD.left, py);
      ctx.lineTo(PAD.left + plotW, py);
      ctx.fillText(formatNumber(v, yStep), PAD.left - 6, py);
    }
    // Time ticks on x.
    const wanted = (xMax - xMin) / Math.max(2, Math.floor(plotW / 90));
    const tStep = TIME_STEPS_MS.find((s) => s >= wanted) || TIME_STEPS_MS[TIME_STEPS_MS.length - 1];
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (let t = Math.ceil(xMin / tStep) * tStep; t <= xMax; t += tStep) {
      const px = Math.round(x(t)) + 0.5;
      ctx.moveTo(px, PAD.top);
      ctx.lineTo(px, PAD.top + plotH);
      ctx.fillText(formatTime(t, tStep), px, PAD.top + plotH + 6);
    }
    ctx.stroke();
    ctx.strokeStyle = ink;
    ctx.strokeRect(PAD.left + 0.5, PAD.top + 0.5, plotW, plotH);

    // The lines, clipped to the plot.
    ctx.save();
    ctx.beginPath();
    ctx.rect(PAD.left, PAD.top, plotW, plotH);
    ctx.clip();
    ctx.lineWidth = 1.75;
    ctx.lineJoin = "round";
    for (const line of series) {
      ctx.strokeStyle = line.color;
      ctx.beginPath();
      if (line.t.length > plotW * 2) this.columns(line, x, y, xMin);
      else this.polyline(line, x, y, xMin);
      ctx.stroke();
    }
    ctx.restore();
  }

  polyline(line, x, y, xMin) {
    const ctx = this.context;
    let started = false;
    for (let i = 0; i < line.t.length; i++) {
      if (line.t[i] < xMin && i + 1 < line.t.length && line.t[i + 1] < xMin) continue;
      const px = x(line.t[i]);
      const py = y(line.v[i]);
      if (started) ctx.lineTo(px, py);
      else ctx.moveTo(px, py);
      started = true;
    }
  }

  /** One stroke per pixel column from the lowest to the highest value in it, joined in order. */
  columns(line, x, y, xMin) {
    const ctx = this.context;
    let column = null;
    let low = 0;
    let high = 0;
    let started = false;
    const emit = () => {
      if (column === null) return;
      if (started) ctx.lineTo(column, y(low));
      else ctx.moveTo(column, y(low));
      ctx.lineTo(column, y(high));
      started = true;
    };
    for (let i = 0; i < line.t.length; i++) {
      if (line.t[i] < xMin) continue;
      const px = Math.round(x(line.t[i]));
      const v = line.v[i];
      if (px !== column) {
        emit();
        column = px;
        low = high = v;
      } else {
        if (v < low) low = v;
        if (v > high) high = v;
      }
    }
    emit();
  }
}
