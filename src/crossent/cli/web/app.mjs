// The calculator page's controls and drawing. Every number comes from losses.mjs.
import * as L from "crossent/losses.mjs";
import { drawBars, drawPlot, fmt } from "crossent/draw.mjs";

const COLORS = {
  ce: "#1f77b4", focal: "#d62728", gce: "#2ca02c", sgce: "#17becf", mae: "#9467bd",
  rce: "#8c564b", sce: "#e377c2", poly1: "#ff7f0e", brier: "#7f7f7f",
  bce: "#1f77b4", sigmoid_focal: "#d62728", binary_gce: "#2ca02c", binary_sgce: "#17becf",
};
// The losses the global label smoothing applies to (SGCE has its own; sigmoid focal takes none).
const SMOOTHED = new Set(["ce", "focal", "gce", "mae", "rce", "sce", "poly1", "brier", "bce", "binary_gce"]);
// Hyper-parameter controls: [loss, key, label, min, max, step, with a slider].
const PARAMS = [
  ["focal", "gamma", "γ", 0, 10, 0.1, true], ["gce", "q", "q", 0, 1, 0.01, true],
  ["sgce", "q", "q", 0, 1, 0.01, false], ["sgce", "label_smoothing", "ε", 0, 1, 0.01, false],
  ["rce", "A", "A (log 0; also SCE's)", -50, -0.01, 0.01, false],
  ["sce", "alpha", "α", 0, 10, 0.05, false], ["sce", "beta", "β", 0, 10, 0.05, false],
  ["poly1", "epsilon", "ε", -1, 10, 0.1, false],
  ["sigmoid_focal", "gamma", "γ", 0, 10, 0.1, true], ["sigmoid_focal", "alpha", "α", 0, 1, 0.01, false],
  ["binary_gce", "q", "q", 0, 1, 0.01, true],
  ["binary_sgce", "q", "q", 0, 1, 0.01, false], ["binary_sgce", "label_smoothing", "ε", 0, 0.5, 0.01, false],
];
const P_FLOOR = 1e-6;

const state = {
  mode: "multiclass", input: "logits", z: [2, 0.5, -1], t: 0, targetKind: "class",
  soft: [0.7, 0.2, 0.1], zBinary: 1.5, y: 1, eps: 0, convention: "uniform",
  selected: new Set([...L.MULTICLASS, ...L.BINARY]),
  params: Object.fromEntries(Object.entries(L.DEFAULTS).map(([k, v]) => [k, { ...v }])),
  flsd: false, focalAlpha: "", alphaNone: false,
};
const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...kids);
  return node;
};

/** A range slider and a number field kept in step; `onValue(v)` gets every valid edit. */
function slider(name, { min, max, step, value, cls = "", onValue }) {
  const range = el("input", { type: "range", min, max, step, "aria-label": `${name} slider` });
  const num = el("input", { type: "number", step: "any", "aria-label": name });
  const row = el("div", { class: `slider ${cls}` }, el("span", { class: "name" }, name), range, num);
  const show = (v) => {
    range.value = v;
    if (document.activeElement !== num) num.value = +(+v).toPrecision(6);
  };
  show(value);
  const edit = (v) => {
    if (Number.isFinite(v)) onValue(v);
  };
  range.addEventListener("input", () => {
    num.value = range.value;
    edit(parseFloat(range.value));
  });
  num.addEventListener("input", () => {
    range.value = num.value;
    edit(parseFloat(num.value));
  });
  row.show = show;
  return row;
}

const isMulti = () => state.mode === "multiclass";
const probs = () => L.softmax(state.z);

function buildPrediction() {
  const box = $("#prediction");
  box.replaceChildren();
  const asProbs = state.input === "probs";
  if (!isMulti()) {
    const value = asProbs ? L.sigmoid(state.zBinary) : state.zBinary;
    box.append(slider(asProbs ? "p" : "z", {
      min: asProbs ? 0.001 : -10, max: asProbs ? 0.999 : 10, step: asProbs ? 0.001 : 0.01, value,
      onValue: (v) => {
        if (asProbs) v = Math.min(Math.max(v, P_FLOOR), 1 - P_FLOOR);
        state.zBinary = asProbs ? Math.log(v) - Math.log1p(-v) : v;
        update();
      },
    }));
  } else {
    const p = probs();
    state.z.forEach((zj, j) => box.append(slider(asProbs ? `p${j}` : `z${j}`, {
      min: asProbs ? 0 : -10, max: asProbs ? 1 : 10, step: asProbs ? 0.001 : 0.01,
      value: asProbs ? p[j] : zj, cls: j === state.t && state.targetKind === "class" ? "true" : "",
      onValue: (v) => {
        if (asProbs) state.z = L.probsToLogits(L.setShare(probs(), j, v, P_FLOOR));
        else state.z[j] = v;
        update();
      },
    })));
  }
  $("#prediction-hint").textContent = asProbs
    ? "Probabilities are renormalised: moving one rescales the others (their ratios kept)."
    : "Logits: any real numbers (type beyond ±10 in the fields).";
}

function syncPrediction() {
  const rows = [...$("#prediction").children];
  const asProbs = state.input === "probs";
  if (!isMulti()) rows[0].show(asProbs ? L.sigmoid(state.zBinary) : state.zBinary);
  else probs().forEach((pj, j) => rows[j].show(asProbs ? pj : state.z[j]));
}

function buildTarget() {
  const select = $("#true-class");
  select.replaceChildren(...state.z.map((_, j) => el("option", { value: j }, `class ${j}`)));
  select.value = state.t;
  const soft = $("#soft-target");
  soft.replaceChildren(...state.soft.map((pj, j) => slider(`P${j}`, {
    min: 0, max: 1, step: 0.01, value: pj,
    onValue: (v) => {
      state.soft = L.setShare(state.soft, j, Math.min(Math.max(v, 0), 1));
      state.soft.forEach((q, i) => soft.children[i].show(q));
      update();
    },
  })));
  soft.hidden = state.targetKind !== "soft";
  select.disabled = state.targetKind !== "class";
  $("#binary-target").replaceChildren(slider("y", {
    min: 0, max: 1, step: 0.01, value: state.y, onValue: (v) => { state.y = v; update(); },
  }));
  $("#smoothing").replaceChildren(slider("ε", {
    min: 0, max: 1, step: 0.01, value: state.eps, onValue: (v) => { state.eps = v; update(); },
  }));
}

function paramInput(loss, key, label, min, max, step, withSlider) {
  const set = (v) => { state.params[loss][key] = v; update(); };
  if (withSlider) {
    const row = slider(label, { min, max, step, value: state.params[loss][key], onValue: set });
    row.dataset.param = `${loss}.${key}`;
    return row;
  }
  const input = el("input", { type: "number", min, max, step, "aria-label": `${loss} ${key}`,
    "data-param": `${loss}.${key}` });
  input.value = +state.params[loss][key].toPrecision(6);
  input.addEventListener("input", () => {
    const v = parseFloat(input.value);
    if (Number.isFinite(v)) set(v);
  });
  return el("label", {}, `${label} `, input);
}

function buildLosses() {
  const box = $("#losses");
  box.replaceChildren();
  for (const name of isMulti() ? L.MULTICLASS : L.BINARY) {
    const check = el("input", { type: "checkbox", "data-loss": name });
    check.checked = state.selected.has(name);
    check.addEventListener("change", () => {
      if (check.checked) state.selected.add(name); else state.selected.delete(name);
      update();
    });
    const params = el("div", { class: "params" });
    for (const [loss, ...rest] of PARAMS) if (loss === name) params.append(paramInput(loss, ...rest));
    extraParams(name, params);
    const title = el("label", {}, check, " ", swatch(name), el("code", {}, name), ` ${L.FORMULAS[name]}`);
    title.style.whiteSpace = "normal";
    box.append(el("div", { class: "loss" }, title, params));
  }
}

function extraParams(name, params) {
  if (name === "focal") {
    const flsd = el("input", { type: "checkbox", "data-param": "focal.flsd" });
    flsd.checked = state.flsd;
    flsd.addEventListener("change", () => { state.flsd = flsd.checked; update(); });
    const alpha = el("input", { type: "text", placeholder: "none", "data-param": "focal.alpha",
      "aria-label": "focal alpha per class" });
    alpha.value = state.focalAlpha;
    alpha.addEventListener("input", () => { state.focalAlpha = alpha.value; update(); });
    params.append(el("label", {}, flsd, " FLSD-53 (γ 5 if p < 0.2, else 3)"),
      el("label", {}, "α per class ", alpha));
  } else if (name === "sigmoid_focal") {
    const none = el("input", { type: "checkbox", "data-param": "sigmoid_focal.alpha_none" });
    none.checked = state.alphaNone;
    none.addEventListener("change", () => { state.alphaNone = none.checked; update(); });
    params.append(el("label", {}, none, " α = None"));
  } else if (name === "sgce" || name === "binary_sgce") {
    const conv = el("select", { "data-param": `${name}.smoothing`, "aria-label": `${name} smoothing` },
      el("option", { value: "others" }, "others"), el("option", { value: "uniform" }, "uniform"));
    conv.value = state.params[name].smoothing;
    conv.addEventListener("change", () => { state.params[name].smoothing = conv.value; update(); });
    params.append(el("label", {}, "convention ", conv));
  }
}

/** The library keyword arguments of one loss from the controls. */
function paramsOf(name) {
  const p = { ...state.params[name] };
  if (SMOOTHED.has(name)) {
    p.label_smoothing = state.eps;
    if ("smoothing" in p) p.smoothing = state.convention;
  }
  if (name === "focal") {
    if (state.flsd) p.gamma = "flsd-53";
    const text = state.focalAlpha.trim();
    p.alpha = text ? text.split(",").map((v) => (v.trim() === "" ? NaN : Number(v))) : null;
  }
  if (name === "sigmoid_focal" && state.alphaNone) p.alpha = null;
  return p;
}

function target() {
  if (!isMulti()) return state.y;
  return state.targetKind === "class" ? state.t : state.soft;
}

/** The class on the plot's x axis: the true class, or the soft target's largest. */
function plottedClass() {
  if (state.targetKind === "class") return state.t;
  return state.soft.indexOf(Math.max(...state.soft));
}

const swatch = (name) => el("span", { class: "swatch", style: `background:${COLORS[name]}` });

/** One row of the table: the loss's spec, its numbers and its gradient bars (or the error). */
function rowFor(name, result, cls) {
  const tr = el("tr", { "data-loss": name });
  const spec = result.error ? name : L.spec(name, paramsOf(name));
  tr.append(el("th", { scope: "row" }, swatch(name), el("code", { class: "spec" }, spec)));
  if (result.error) {
    tr.append(el("td", { class: "error", colspan: 6 }, `crossent raises: ${result.error}`));
    return tr;
  }
  for (const key of ["value", "chance", "value_minus_chance", "min_achievable", "excess"]) {
    tr.append(el("td", { class: key }, fmt(result[key])));
  }
  const bars = el("td", { class: "bars" });
  bars.append(drawBars(result.gradient, cls, COLORS[name], "z"));
  tr.append(bars);
  return tr;
}

/** The gradient's numbers, one row per loss, one column per logit. */
function gradientTable(results, k) {
  const columns = Array.from({ length: k }, (_, j) => `∂L/∂z${isMulti() ? j : ""}`);
  const head = el("tr", {}, ...["loss", ...columns].map((c) => el("th", { scope: "col" }, c)));
  const rows = results.filter(([, r]) => !r.error).map(([name, r]) => el("tr", { "data-loss": name },
    el("th", { scope: "row" }, el("code", {}, name)),
    ...r.gradient.map((g, j) => el("td", { "data-class": j }, fmt(g)))));
  $("#gradient-table").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
}

/** The plot of each loss that has a value against the x-axis class's probability. */
function plot(results, z, cls) {
  const curves = results.filter(([, r]) => !r.error).map(([name, r]) => ({
    name, color: COLORS[name], now: r.value,
    points: L.curve(name, z, target(), paramsOf(name), cls, PLOT_PS),
  }));
  const which = state.targetKind === "class" ? "true class" : "largest target";
  const xNow = isMulti() ? probs()[cls] : L.sigmoid(state.zBinary);
  drawPlot($("#plot"), $("#legend"), curves, xNow, isMulti() ? `p${cls} (${which})` : "p = σ(z)");
  $("#plot-caption").textContent = isMulti()
    ? `Each selected loss against p${cls}, the probability of class ${cls}, as its logit moves ` +
      "and the others stay; dots: the current prediction."
    : `Each selected loss against p = σ(z) for the target y = ${state.y}; dots: the current prediction.`;
}

function summary(k) {
  const list = (a) => `[${a.map((v) => v.toFixed(4)).join(", ")}]`;
  const parts = [];
  if (isMulti()) {
    parts.push(`<b>p</b> = softmax(z) = ${list(probs())}`);
    parts.push(state.targetKind === "class" ? `true class <b>t</b> = ${state.t}` : "soft target P");
    parts.push(`K = ${k}`, `chance ln K = ${Math.log(k).toFixed(4)}`);
  } else {
    parts.push(`<b>p</b> = σ(z) = ${L.sigmoid(state.zBinary).toFixed(4)}`, `y = ${state.y}`,
      `chance ln 2 = ${Math.log(2).toFixed(4)}`);
  }
  $("#summary").innerHTML = parts.join(" · ");
}

function update() {
  const k = isMulti() ? state.z.length : 1;
  const z = isMulti() ? state.z : state.zBinary;
  const names = (isMulti() ? L.MULTICLASS : L.BINARY).filter((n) => state.selected.has(n));
  const results = names.map((name) => {
    try {
      return [name, L.evaluate(name, z, target(), paramsOf(name))];
    } catch (err) {
      return [name, { error: err.message }];
    }
  });
  const cls = isMulti() ? plottedClass() : 0;
  syncPrediction();
  summary(k);
  $("#table tbody").replaceChildren(...results.map(([n, r]) => rowFor(n, r, cls)));
  gradientTable(results, k);
  plot(results, z, cls);
  $("#convention-row").hidden = !isMulti();
  $("#smoothing-hint").textContent = isMulti()
    ? "ε applies to every loss but SGCE (its own ε and convention)."
    : "ε moves y towards 1/2 (BCE, binary GCE); binary SGCE has its own; sigmoid focal takes none.";
  document.body.dataset.ready = "1";
}

const PLOT_PS = Array.from({ length: 399 }, (_, i) => (i + 1) / 400);

function resize(k) {
  const old = state.z.length;
  state.z = Array.from({ length: k }, (_, j) => (j < old ? state.z[j] : 0));
  state.soft = Array.from({ length: k }, (_, j) => (j < old ? state.soft[j] : 0));
  const total = state.soft.reduce((a, b) => a + b, 0);
  state.soft = total > 0 ? state.soft.map((v) => v / total) : state.soft.map(() => 1 / k);
  state.t = Math.min(state.t, k - 1);
}

function rebuild() {
  for (const node of document.querySelectorAll("[data-for]")) node.hidden = node.dataset.for !== state.mode;
  buildPrediction();
  buildTarget();
  buildLosses();
  update();
}

function wire() {
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.addEventListener("change", () => { state.mode = radio.value; rebuild(); });
  }
  for (const radio of document.querySelectorAll("input[name=input]")) {
    radio.addEventListener("change", () => { state.input = radio.value; rebuild(); });
  }
  for (const radio of document.querySelectorAll("input[name=target]")) {
    radio.addEventListener("change", () => { state.targetKind = radio.value; rebuild(); });
  }
  for (const radio of document.querySelectorAll("input[name=convention]")) {
    radio.addEventListener("change", () => { state.convention = radio.value; update(); });
  }
  $("#k").addEventListener("input", () => {
    const k = parseInt($("#k").value, 10);
    if (k >= 2 && k <= 20) { resize(k); rebuild(); }
  });
  $("#true-class").addEventListener("change", () => { state.t = +$("#true-class").value; rebuild(); });
}

wire();
rebuild();
