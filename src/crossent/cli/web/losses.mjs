// The math of the loss calculator page: crossent's losses, their gradients with respect to
// the logits, the chance level and the minimum reachable, in float64.
//
// This module mirrors the Python library term by term (src/crossent/terms.py, the engine in
// src/crossent/engine/multiclass.py and src/crossent/engine/binary.py, the minimum search of
// src/crossent/calc.py): a multiclass loss is  l = sum_k a_k F(s_k, P_k)  with s = log softmax(z),
// P the (smoothed) target and a_k the focal alpha (or 1); its gradient is
// dl/dz_j = a_j G(s_j, P_j) - q_j sum_k a_k G(s_k, P_k), q = softmax(z). A binary loss on one
// logit z and a target y in [0, 1] is  l = a_1 F(log s(z), y) + a_0 F(log s(-z), 1 - y).
// tests/cli/web/golden.json (written by crossent in Python) checks every number here to 1e-9.
//
// Parameters are the library's keyword arguments (crossent.get_loss(name, **params)).

export const MULTICLASS = ["ce", "focal", "gce", "sgce", "mae", "rce", "sce", "poly1", "brier"];
export const BINARY = ["bce", "sigmoid_focal", "binary_gce", "binary_sgce"];

/** RCE's value of log 0: log(1e-4), as the authors' code (crossent's default `A`). */
export const DEFAULT_A = Math.log(1e-4);

const SMOOTHED = { label_smoothing: 0, smoothing: "uniform" };

/** Every loss's parameters with crossent's defaults. */
export const DEFAULTS = {
  ce: { ...SMOOTHED },
  focal: { gamma: 2, alpha: null, ...SMOOTHED },
  gce: { q: 0.7, ...SMOOTHED },
  sgce: { q: 0.7, label_smoothing: 0.1, smoothing: "others" },
  mae: { ...SMOOTHED },
  rce: { A: DEFAULT_A, ...SMOOTHED },
  sce: { alpha: 0.1, beta: 1, A: DEFAULT_A, ...SMOOTHED },
  poly1: { epsilon: 1, ...SMOOTHED },
  brier: { ...SMOOTHED },
  bce: { label_smoothing: 0 },
  sigmoid_focal: { gamma: 2, alpha: 0.25 },
  binary_gce: { q: 0.7, label_smoothing: 0 },
  binary_sgce: { q: 0.7, label_smoothing: 0.1, smoothing: "others" },
};

/** What each loss is, in a few words (the formula for a one-hot target). */
export const FORMULAS = {
  ce: "−log p_t",
  focal: "−α_t (1 − p_t)^γ log p_t",
  gce: "(1 − p_t^q) / q",
  sgce: "Σ_k P_k (1 − p_k^q) / q, P smoothed",
  mae: "Σ_k |P_k − p_k| = 2 (1 − p_t)",
  rce: "−Σ_k p_k max(log P_k, A) = −A (1 − p_t)",
  sce: "α CE + β RCE",
  poly1: "−log p_t + ε (1 − p_t)",
  brier: "Σ_k (p_k − P_k)²",
  bce: "−[y log σ(z) + (1 − y) log(1 − σ(z))]",
  sigmoid_focal: "−α y (1 − σ)^γ log σ − (1 − α)(1 − y) σ^γ log(1 − σ)",
  binary_gce: "y (1 − σ^q)/q + (1 − y)(1 − (1 − σ)^q)/q",
  binary_sgce: "binary GCE against the smoothed y",
};

const TINY = 2.2250738585072014e-308; // torch.finfo(float64).tiny
const S_FLOOR = -1.0e4; // below it e^s is 0 (crossent.terms._S_FLOOR)
const LOG_FLSD = Math.log(0.2); // FLSD-53 switches gamma where p < 0.2
const MARGIN = 30; // the minimum search: margins in [-30, 30] (crossent.cli.calc)

// ---------------------------------------------------------------- checks (the library's)

/** A value as Python prints it ('others', [1.0, 2.0], None), as in crossent's messages. */
function pyRepr(v) {
  if (v === null || v === undefined) return "None";
  if (typeof v === "string") return `'${v}'`;
  if (Array.isArray(v)) return `[${v.map(pyRepr).join(", ")}]`;
  return String(v);
}

function fail(name, expected, got) {
  return new Error(`Expected \`${name}\` ${expected}, but got ${pyRepr(got)}`);
}

function real(name, value, bounds = {}) {
  const { low = -Infinity, high = Infinity, lowOpen = false, highOpen = false } = bounds;
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw fail(name, "to be a finite real number", value);
  }
  const belowLow = lowOpen ? value <= low : value < low;
  const aboveHigh = highOpen ? value >= high : value > high;
  if (belowLow || aboveHigh) {
    const lo = Number.isFinite(low) ? `${lowOpen ? "(" : "["}${low}` : "(-inf";
    const hi = Number.isFinite(high) ? `${high}${highOpen ? ")" : "]"}` : "inf)";
    throw fail(name, `in ${lo}, ${hi}`, value);
  }
  return value;
}

function choice(name, value, choices) {
  if (!choices.includes(value)) {
    throw fail(name, `to be one of ${choices.map((c) => `'${c}'`).join(", ")}`, value);
  }
  return value;
}

/** The loss's parameters: its defaults overridden by `params`; unknown names raise. */
export function withDefaults(name, params = {}) {
  if (!(name in DEFAULTS)) {
    throw fail("name", `to be one of ${Object.keys(DEFAULTS).join(", ")}`, name);
  }
  for (const key of Object.keys(params)) {
    if (!(key in DEFAULTS[name])) {
      const accepted = Object.keys(DEFAULTS[name]).join(", ");
      throw new Error(`${name} takes no argument '${key}' (it takes ${accepted})`);
    }
  }
  return { ...DEFAULTS[name], ...params };
}

// ---------------------------------------------------------------- numerics

/** log softmax as crossent computes it: (z - max) - log sum e^(z - max). */
export function logSoftmax(z) {
  const m = Math.max(...z);
  const shifted = z.map((v) => v - m);
  let d = 0;
  for (const v of shifted) d += Math.exp(v);
  const logD = Math.log(d);
  return shifted.map((v) => v - logD);
}

export function softmax(z) {
  return logSoftmax(z).map(Math.exp);
}

/** log sigmoid(x) = min(x, 0) - log1p(e^-|x|), as torch. */
export function logSigmoid(x) {
  return Math.min(x, 0) - Math.log1p(Math.exp(-Math.abs(x)));
}

export function sigmoid(x) {
  return Math.exp(logSigmoid(x));
}

/** Logits log p of probabilities > 0 (renormalised), as `crossent calc --probs`. */
export function probsToLogits(probs) {
  if (probs.some((p) => !(p > 0) || !Number.isFinite(p))) {
    throw fail("probs", "to be > 0 (a probability of 0 is a logit of -inf)", probs);
  }
  const total = probs.reduce((a, b) => a + b, 0);
  return probs.map((p) => Math.log(p / total));
}

/**
 * Set entry `j` of a distribution to `v` and rescale the others so the sum stays 1 (their
 * ratios kept; equal shares if they were all 0). `floor` keeps every entry >= floor.
 */
export function setShare(dist, j, v, floor = 0) {
  const k = dist.length;
  const value = Math.min(Math.max(v, floor), 1 - floor * (k - 1));
  const rest = dist.reduce((a, b, i) => (i === j ? a : a + b), 0);
  const free = Math.max(1 - value - floor * (k - 1), 0); // what the others share above the floor
  return dist.map((p, i) => {
    if (i === j) return value;
    return floor + (rest > 0 ? p / rest : 1 / (k - 1)) * free;
  });
}

// ---------------------------------------------------------------- terms F(s, P), G = dF/ds

/** e^s - P without cancellation where P is near 1 (crossent.terms._prob_minus_target). */
function probMinusTarget(s, p) {
  return p > 0.5 ? Math.expm1(s) + (1 - p) : Math.exp(s) - p;
}

const CE = {
  vanishes: true,
  F: (s, p) => -p * s,
  G: (s, p) => -p,
};

function focalTerm(gamma) {
  const exponent = gamma === "flsd-53" ? (s) => (s < LOG_FLSD ? 5 : 3) : () => gamma;
  return {
    vanishes: true,
    F: (s, p) => -p * Math.pow(-Math.expm1(s), exponent(s)) * s,
    G: (s0, p) => {
      const g = exponent(s0);
      const s = Math.max(s0, S_FLOOR);
      const oneMinusQ = -Math.expm1(s);
      const bracket = 1 - (g * Math.exp(s) * s) / Math.max(oneMinusQ, TINY);
      return -p * Math.pow(oneMinusQ, g) * bracket;
    },
  };
}

function lqTerm(q) {
  if (q === 0) return CE;
  return {
    vanishes: true,
    F: (s, p) => Math.expm1(s * q) * (-p / q),
    G: (s, p) => -p * Math.exp(s * q),
  };
}

const MAE = {
  vanishes: false,
  F: (s, p) => Math.abs(probMinusTarget(s, p)),
  G: (s, p) => Math.sign(probMinusTarget(s, p)) * Math.exp(s),
};

function rceTerm(A) {
  const F = (s, p) => -Math.exp(s) * Math.max(Math.log(p), A);
  return { vanishes: false, F, G: F };
}

function poly1Term(epsilon) {
  return {
    vanishes: true,
    F: (s, p) => -p * (s + epsilon * Math.expm1(s)),
    G: (s, p) => -p * (1 + epsilon * Math.exp(s)),
  };
}

const BRIER = {
  vanishes: false,
  F: (s, p) => probMinusTarget(s, p) ** 2,
  G: (s, p) => 2 * probMinusTarget(s, p) * Math.exp(s),
};

/** c_1 T_1 + c_2 T_2, each part zeroed where P = 0 if it vanishes there (WeightedSumTerm). */
function weightedSum(parts) {
  const part = (term, v, p) => (term.vanishes && p === 0 ? 0 : v);
  const sum = (fn) => (s, p) =>
    parts.reduce((acc, [c, term]) => acc + c * part(term, term[fn](s, p), p), 0);
  return { vanishes: false, F: sum("F"), G: sum("G") };
}

/** The term of a loss and its checked parameters. */
function termOf(name, o) {
  switch (name) {
    case "ce":
    case "bce":
      return CE;
    case "focal":
      if (o.gamma === "flsd-53") return focalTerm("flsd-53");
      return focalTerm(real("gamma", o.gamma, { low: 0 }));
    case "sigmoid_focal":
      return focalTerm(real("gamma", o.gamma, { low: 0 }));
    case "gce":
    case "sgce":
    case "binary_gce":
    case "binary_sgce":
      return lqTerm(real("q", o.q, { low: 0, high: 1 }));
    case "mae":
      return MAE;
    case "rce":
      return rceTerm(real("A", o.A, { high: 0, highOpen: true }));
    case "sce": {
      const a = real("alpha", o.alpha, { low: 0 });
      const b = real("beta", o.beta, { low: 0 });
      return weightedSum([[a, CE], [b, rceTerm(real("A", o.A, { high: 0, highOpen: true }))]]);
    }
    case "poly1":
      return poly1Term(real("epsilon", o.epsilon, { low: -1 }));
    case "brier":
      return BRIER;
    default:
      throw fail("name", "to be a loss of the calculator", name);
  }
}

// ---------------------------------------------------------------- targets

/** (off, on): the smoothed one-hot target off and on the true class (_targets.smoothing_levels). */
export function smoothingLevels(eps, smoothing, k) {
  if (smoothing === "others" && k > 1) return [eps / (k - 1), 1 - eps];
  return [eps / k, 1 - eps + eps / k];
}

function checkSmoothing(eps, smoothing, k, soft) {
  real("label_smoothing", eps, { low: 0, high: 1 });
  choice("smoothing", smoothing, ["uniform", "others"]);
  if (smoothing === "others" && eps > 0) {
    if (soft) throw fail("smoothing", "'uniform' for probability targets", smoothing);
    const limit = (k - 1) / k;
    if (eps > limit + 1e-12) {
      throw fail(
        "label_smoothing",
        `<= (K-1)/K = ${+limit.toPrecision(6)} with smoothing='others' (beyond it the true ` +
          "class gets less than each other class)",
        eps,
      );
    }
  }
}

function checkTarget(target, k) {
  if (Array.isArray(target)) {
    if (target.length !== k || target.some((p) => !(p >= 0 && p <= 1))) {
      throw fail("target", `to be ${k} probabilities in [0, 1]`, target);
    }
    return;
  }
  if (!Number.isInteger(target) || target < 0 || target >= k) {
    throw fail("target", `to be a class index in [0, ${k})`, target);
  }
}

/**
 * The target distribution P: a class index smoothed by `eps` ("uniform": eps/K everywhere,
 * "others": 1 - eps on the class, eps/(K-1) elsewhere), or probabilities smoothed to
 * (1 - eps) P + eps/K.
 */
export function targetDistribution(k, target, eps = 0, smoothing = "uniform") {
  checkTarget(target, k);
  const soft = Array.isArray(target);
  checkSmoothing(eps, smoothing, k, soft);
  if (soft) return eps > 0 ? target.map((p) => p * (1 - eps) + eps / k) : [...target];
  const [off, on] = smoothingLevels(eps, smoothing, k);
  return Array.from({ length: k }, (_, i) => (i === target ? on : off));
}

function classAlpha(alpha, k) {
  if (alpha === null || alpha === undefined) return null;
  if (!Array.isArray(alpha)) {
    const why = "to be None or one value per class (a single float is the sigmoid form's)";
    throw fail("alpha", why, alpha);
  }
  if (alpha.length !== k || alpha.some((a) => !(a >= 0) || !Number.isFinite(a))) {
    throw fail("alpha", `to hold ${k} finite values >= 0 (one per class)`, alpha);
  }
  return alpha;
}

// ---------------------------------------------------------------- losses

function multiclass(name, z, target, o) {
  const k = z.length;
  if (k < 2 || z.some((v) => !Number.isFinite(v))) {
    throw fail("logits", "to be >= 2 finite numbers", z);
  }
  const term = termOf(name, o);
  const P = targetDistribution(k, target, o.label_smoothing, o.smoothing);
  const a = name === "focal" ? classAlpha(o.alpha, k) : null;
  const s = logSoftmax(z);
  let value = 0;
  let total = 0;
  const wg = new Array(k);
  for (let i = 0; i < k; i++) {
    if (term.vanishes && P[i] === 0) {
      wg[i] = 0;
      continue;
    }
    const w = a ? a[i] : 1;
    value += w === 0 ? 0 : w * term.F(s[i], P[i]);
    wg[i] = w === 0 ? 0 : w * term.G(s[i], P[i]);
    total += wg[i];
  }
  const gradient = s.map((si, j) => wg[j] - Math.exp(si) * total);
  return { value, gradient };
}

function binaryTarget(name, y, o) {
  real("target", y, { low: 0, high: 1 });
  let eps = real("label_smoothing", o.label_smoothing ?? 0, { low: 0, high: 1 });
  if (name === "binary_sgce") {
    choice("smoothing", o.smoothing, ["uniform", "others"]);
    if (o.smoothing === "others" && eps > 0.5) {
      throw fail("label_smoothing", "<= 1/2 with smoothing='others' and two outcomes", eps);
    }
    if (o.smoothing === "others" && eps > 0) {
      y = y * (1 - 2 * eps) + eps; // (1 - eps) y + eps (1 - y)
      eps = 0;
    }
  }
  return eps ? y * (1 - eps) + eps / 2 : y;
}

function binary(name, z, y0, o) {
  if (typeof z !== "number" || !Number.isFinite(z)) throw fail("logit", "to be a finite number", z);
  const term = termOf(name, o);
  const y = binaryTarget(name, y0, o);
  let a0 = 1;
  let a1 = 1;
  if (name === "sigmoid_focal" && o.alpha !== null) {
    a1 = real("alpha", o.alpha, { low: 0, high: 1 });
    a0 = 1 - a1;
  }
  const weighted = (c, v) => (c === 0 ? 0 : c * v);
  const s1 = logSigmoid(z);
  const s0 = logSigmoid(-z);
  const part = (fn, s, p) => (term.vanishes && p === 0 ? 0 : term[fn](s, p));
  const value = weighted(a1, part("F", s1, y)) + weighted(a0, part("F", s0, 1 - y));
  const g1 = weighted(a1, part("G", s1, y));
  const g0 = weighted(a0, part("G", s0, 1 - y));
  return { value, gradient: [g1 * Math.exp(s0) - g0 * Math.exp(s1)] };
}

/** Whether a loss takes one logit and a target in [0, 1] (a sigmoid) instead of K logits. */
export function isBinary(name) {
  return BINARY.includes(name);
}

/**
 * A loss's value and gradient with respect to the logits (the `mean` of one element).
 *
 * @param {string} name registry name (MULTICLASS or BINARY).
 * @param {number[]|number} z the K logits, or one logit for a binary loss.
 * @param {number|number[]} target class index or K probabilities; binary: y in [0, 1].
 * @param {object} params the library's keyword arguments (defaults for the missing ones).
 * @returns {{value: number, gradient: number[]}}
 */
export function lossAndGradient(name, z, target, params = {}) {
  const o = withDefaults(name, params);
  return isBinary(name) ? binary(name, z, target, o) : multiclass(name, z, target, o);
}

/** torch.linspace(start, end, steps) in float64 (the same points, the same rounding). */
export function linspace(start, end, steps) {
  const step = (end - start) / (steps - 1);
  const half = Math.floor(steps / 2);
  return Array.from({ length: steps }, (_, i) =>
    i < half ? start + step * i : end - step * (steps - i - 1),
  );
}

/**
 * The smallest loss over predictions whose logits are (m, 0, ..., 0), the margin m on the
 * true class, |m| <= 30: a grid of step 0.05 refined three times around its best point, as
 * `crossent calc`. Binary: over the logit m. `null` for probability targets.
 */
export function minimumOf(name, k, target, params = {}) {
  if (Array.isArray(target)) return null;
  const o = withDefaults(name, params);
  const key = JSON.stringify([name, k, target, o]); // the minimum does not depend on the logits
  if (!MINIMA.has(key)) {
    if (MINIMA.size > 1000) MINIMA.clear();
    MINIMA.set(key, searchMinimum(name, k, target, o));
  }
  return MINIMA.get(key);
}

const MINIMA = new Map();

function searchMinimum(name, k, target, o) {
  const binaryLoss = isBinary(name);
  const at = (m) => {
    if (binaryLoss) return binary(name, m, target, o).value;
    const row = new Array(k).fill(0);
    row[target] = m;
    return multiclass(name, row, target, o).value;
  };
  let grid = linspace(-MARGIN, MARGIN, 1201);
  let bestValue = Infinity;
  for (let round = 0; round < 4; round++) {
    const values = grid.map(at);
    let best = 0;
    for (let i = 1; i < values.length; i++) if (values[i] < values[best]) best = i;
    bestValue = values[best];
    const lo = grid[Math.max(best - 1, 0)];
    const hi = grid[Math.min(best + 1, grid.length - 1)];
    grid = linspace(lo, hi, 201);
  }
  return bestValue;
}

/**
 * Everything `crossent calc` reports of one loss but the finite difference: value, gradient,
 * chance (the loss of the uniform prediction, logits 0), value - chance, the minimum
 * reachable under the loss's smoothing and the excess over it.
 */
export function evaluate(name, z, target, params = {}) {
  const { value, gradient } = lossAndGradient(name, z, target, params);
  const k = isBinary(name) ? 2 : z.length;
  const zero = isBinary(name) ? 0 : new Array(k).fill(0);
  const chance = lossAndGradient(name, zero, target, params).value;
  const min = minimumOf(name, k, target, params);
  return {
    name,
    value,
    gradient,
    chance,
    value_minus_chance: value - chance,
    min_achievable: min,
    excess: min === null ? null : value - min,
  };
}

/**
 * The loss against the probability of one class as that class's logit moves and the others
 * stay: points [p, loss] for p in `ps`. Binary: against p = sigmoid(z).
 */
export function curve(name, z, target, params, cls, ps) {
  const o = withDefaults(name, params);
  if (isBinary(name)) {
    return ps.map((p) => [p, binary(name, Math.log(p) - Math.log1p(-p), target, o).value]);
  }
  const others = z.filter((_, i) => i !== cls);
  const m = Math.max(...others);
  const lseOthers = m + Math.log(others.reduce((acc, v) => acc + Math.exp(v - m), 0));
  return ps.map((p) => {
    const row = [...z];
    row[cls] = lseOthers + Math.log(p) - Math.log1p(-p);
    return [p, multiclass(name, row, target, o).value];
  });
}

/** `name(key=value, ...)` with the parameters that differ from the defaults: a crossent spec. */
export function spec(name, params = {}) {
  const o = withDefaults(name, params);
  const py = (v) => {
    if (Array.isArray(v)) return `[${v.map(py).join(", ")}]`;
    return Number.isInteger(v) ? v.toFixed(1) : pyRepr(v);
  };
  const changed = Object.keys(o).filter(
    (key) => JSON.stringify(o[key]) !== JSON.stringify(DEFAULTS[name][key]),
  );
  const smoothingOnly = changed.length === 1 && changed[0] === "smoothing" && !o.label_smoothing;
  const shown = smoothingOnly ? [] : changed;
  return shown.length ? `${name}(${shown.map((key) => `${key}=${py(o[key])}`).join(", ")})` : name;
}
