// node --test tests/cli/web/losses.test.mjs: the page's math (losses.mjs) against crossent's numbers
// in tests/cli/web/golden.json (written by `python -m tests.cli.web.golden`).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import * as L from "../../../src/crossent/cli/web/losses.mjs";

const golden = JSON.parse(readFileSync(new URL("./golden.json", import.meta.url), "utf8"));
const RTOL = 1e-9;
// float64 itself knows a loss or a gradient entry only to a few ulps of the numbers it was
// computed from (1 - p_t as p_t -> 1, a sum of terms of either sign): below 1e-14 a difference
// is rounding, not a different definition (they agree to 6e-16 there).
const ATOL = 1e-14;

function close(actual, expected, where) {
  if (expected === null) {
    assert.equal(actual, null, where);
    return;
  }
  const diff = Math.abs(actual - expected);
  assert.ok(
    diff <= RTOL * Math.abs(expected) + ATOL,
    `${where}: ${actual} vs crossent ${expected} (difference ${diff.toExponential(2)})`,
  );
}

for (const [index, c] of golden.cases.entries()) {
  const label = `case ${index}: ${c.kind}, target ${JSON.stringify(c.target)}`;
  test(label, () => {
    for (const [name, params] of Object.entries(c.losses)) {
      const want = c.expected[name];
      if ("error" in want) {
        assert.throws(() => L.evaluate(name, c.logits, c.target, params), Error, `${name} must raise: ${want.error}`);
        continue;
      }
      const got = L.evaluate(name, c.logits, c.target, params);
      for (const key of ["value", "chance", "value_minus_chance", "min_achievable", "excess"]) {
        close(got[key], want[key], `${name} ${key}`);
      }
      assert.equal(got.gradient.length, want.gradient.length, `${name} gradient length`);
      want.gradient.forEach((g, j) => close(got.gradient[j], g, `${name} gradient[${j}]`));
    }
  });
}

test("the golden file covers every loss of the page and the edges", () => {
  const names = new Set(golden.cases.flatMap((c) => Object.keys(c.losses)));
  assert.deepEqual([...names].sort(), [...L.MULTICLASS, ...L.BINARY].sort());
  const ks = golden.cases.filter((c) => c.kind === "multiclass").map((c) => c.logits.length);
  assert.ok(ks.includes(2) && ks.includes(20));
  const eps = golden.cases.flatMap((c) => Object.values(c.losses).map((p) => p.label_smoothing ?? 0));
  assert.ok(eps.includes(1));
  const extremes = golden.cases.map((c) => (Array.isArray(c.logits) ? c.logits[0] : c.logits));
  assert.ok(extremes.some((z) => z <= -30) && extremes.some((z) => z >= 30));
});

test("renormalised probabilities keep their ratios and sum to 1", () => {
  const p = L.setShare([0.5, 0.3, 0.2], 0, 0.8);
  assert.ok(Math.abs(p[0] - 0.8) < 1e-15 && Math.abs(p[1] / p[2] - 1.5) < 1e-12);
  assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-15);
  const floor = L.setShare([0.5, 0.5, 0], 1, 1, 1e-6);
  assert.ok(floor.every((v) => v >= 1e-6) && Math.abs(floor.reduce((a, b) => a + b, 0) - 1) < 1e-15);
  assert.deepEqual(L.probsToLogits([2, 2]), [Math.log(0.5), Math.log(0.5)]);
});

test("spec strings name the parameters that differ from crossent's defaults", () => {
  assert.equal(L.spec("ce", { label_smoothing: 0, smoothing: "others" }), "ce");
  assert.equal(L.spec("focal", { gamma: 1, alpha: [1, 0.5] }), "focal(gamma=1.0, alpha=[1.0, 0.5])");
  assert.equal(L.spec("sgce", { smoothing: "uniform" }), "sgce(smoothing='uniform')");
  assert.throws(() => L.spec("ce", { gamma: 2 }), /takes no argument 'gamma'/);
});

test("torch.linspace's points", () => {
  const grid = L.linspace(-30, 30, 1201);
  assert.equal(grid[0], -30);
  assert.equal(grid[600], 0);
  assert.equal(grid[1200], 30);
});
