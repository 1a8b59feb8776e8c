// Inline SVG drawing of the calculator page: gradient bars and the loss curves (no library).
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text = "") {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

/** Six decimals (exact to 5e-7), or four significant digits in exponent form below 1e-3. */
export function fmt(x) {
  if (x === null || x === undefined) return "—";
  if (!Number.isFinite(x)) return String(x);
  if (x === 0 || Math.abs(x) >= 1e-3) return x.toFixed(6);
  return x.toExponential(4);
}

/** One bar per logit, up for a positive gradient; `highlight` is the true class (or -1). */
export function drawBars(gradient, highlight, color, prefix) {
  const k = gradient.length;
  const width = Math.max(84, k * (k <= 8 ? 16 : 10));
  const height = 30;
  const mid = height / 2;
  const scale = Math.max(...gradient.map(Math.abs)) || 1;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "gradient" });
  root.append(svg("line", { x1: 0, x2: width, y1: mid, y2: mid, stroke: "#9aa3b2", "stroke-width": 1 }));
  const slot = width / k;
  gradient.forEach((g, j) => {
    const h = (Math.abs(g) / scale) * (mid - 2);
    const bar = svg("rect", {
      x: j * slot + slot * 0.18, width: slot * 0.64, y: g > 0 ? mid - h : mid, height: Math.max(h, 0.5),
      fill: color, "fill-opacity": j === highlight ? 1 : 0.45, "data-class": j,
    });
    bar.append(svg("title", {}, `∂L/∂${prefix}${k > 1 ? j : ""} = ${fmt(g)}`));
    root.append(bar);
  });
  return root;
}

function niceStep(span) {
  const raw = span / 5;
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
}

const BOX = { left: 48, right: 628, top: 12, bottom: 300 };
const GRID = { stroke: "#c7ced9", "stroke-width": 1 };

function label(x, y, text, attrs = {}) {
  return svg("text", { x, y, "text-anchor": "middle", "font-size": 12, fill: "#5b6474", ...attrs }, text);
}

/** The frame: horizontal grid lines at nice steps up to `top`, x ticks, axis titles. */
function axes(root, px, py, top, step, xLabel) {
  for (let y = 0; y <= top + step / 2; y += step) {
    root.append(svg("line", { x1: BOX.left, x2: BOX.right, y1: py(y), y2: py(y), ...GRID,
      "stroke-dasharray": y ? "3 3" : "" }));
    root.append(label(BOX.left - 6, py(y) + 4, String(+y.toPrecision(4)), { "text-anchor": "end" }));
  }
  for (let i = 0; i <= 10; i += 2) {
    root.append(svg("line", { x1: px(i / 10), x2: px(i / 10), y1: BOX.bottom, y2: BOX.bottom + 5, ...GRID }));
    root.append(label(px(i / 10), BOX.bottom + 19, String(i / 10)));
  }
  const middle = (BOX.top + BOX.bottom) / 2;
  const title = { "font-size": 13, fill: "#1d2330" };
  root.append(label((BOX.left + BOX.right) / 2, 334, xLabel, title));
  root.append(label(14, middle, "loss", { ...title, transform: `rotate(-90 14 ${middle})` }));
}

/**
 * Curves `[{name, color, points: [[x, loss]], now}]` against x in (0, 1), each with a dot at
 * the current x; the y axis ends at the largest loss over x >= 0.05 (or the current values).
 */
export function drawPlot(root, legend, curves, xNow, xLabel) {
  root.replaceChildren();
  legend.replaceChildren();
  const shown = curves.flatMap((c) => [c.now, ...c.points.filter(([x]) => x >= 0.05).map(([, y]) => y)]);
  const yMax = Math.max(...shown.filter(Number.isFinite), 1e-9);
  const step = niceStep(yMax);
  const top = Math.ceil(yMax / step - 1e-9) * step;
  const px = (x) => BOX.left + x * (BOX.right - BOX.left);
  const py = (y) => BOX.bottom - (Math.min(Math.max(y, 0), top * 1.04) / top) * (BOX.bottom - BOX.top);
  axes(root, px, py, top, step, xLabel);
  root.append(svg("line", { x1: px(xNow), x2: px(xNow), y1: BOX.top, y2: BOX.bottom, stroke: "#1d2330",
    "stroke-width": 1, "stroke-dasharray": "2 3" }));
  const clip = svg("clipPath", { id: "plot-area" });
  clip.append(svg("rect", { x: BOX.left, y: BOX.top - 4, width: BOX.right - BOX.left,
    height: BOX.bottom - BOX.top + 4 }));
  root.append(clip);
  for (const c of curves) {
    const points = c.points.filter(([, y]) => Number.isFinite(y))
      .map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(" ");
    root.append(svg("polyline", { points, fill: "none", stroke: c.color, "stroke-width": 2,
      "clip-path": "url(#plot-area)", "data-loss": c.name }));
    const dot = svg("circle", { cx: px(xNow), cy: py(c.now), r: 4.5, fill: c.color, stroke: "#fff",
      "stroke-width": 1.5, "data-loss": c.name });
    dot.append(svg("title", {}, `${c.name}: ${fmt(c.now)}`));
    root.append(dot);
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = c.color;
    const name = document.createElement("code");
    name.textContent = c.name;
    item.append(swatch, name);
    legend.append(item);
  }
}
