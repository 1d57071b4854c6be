// The default augmentation's draws against the recipe that bench/reference/train_synth.py (the
// PyTorch side of the training-parity benchmark, issue 22) applies: per sample a quarter turn k
// uniform in {0..3} and a horizontal and a vertical flip with probability 1/2 each, shared by A,
// B and the label; per image (A and B drawn independently) brightness uniform in ±32/255,
// contrast and saturation uniform in [0.5, 1.5), each switched on with probability 1/2; no
// any-angle rotation or A/B exchange. Frequencies over 25,600 seeded samples, with bands of about
// five standard errors (the draws are deterministic, so the test is too).

import assert from "node:assert/strict";
import { AUG_PARAMS } from "../../engine/ops/augment.ts";
import { augmentParams, DEFAULT_AUGMENT } from "../../data/augment.ts";

const BATCH = 64, STEPS = 400, N = BATCH * STEPS;
const rows: Float32Array[] = [];
for (let step = 0; step < STEPS; step++) {
  const p = augmentParams(BATCH, 7, step, DEFAULT_AUGMENT);
  for (let i = 0; i < BATCH; i++) rows.push(p.subarray(i * AUG_PARAMS, (i + 1) * AUG_PARAMS));
}
const col = (j: number) => rows.map((r) => r[j]);
const frac = (xs: number[], f: (x: number) => boolean) => xs.filter(f).length / xs.length;
/** Five standard errors of a frequency near q over n draws. */
const band = (q: number, n = N) => 5 * Math.sqrt((q * (1 - q)) / n);

Deno.test("default augmentation: quarter turns uniform, flips at 1/2, nothing else geometric", () => {
  for (let k = 0; k < 4; k++) {
    const f = frac(col(0), (x) => x === k);
    assert.ok(Math.abs(f - 0.25) < band(0.25), `k = ${k}: frequency ${f}`);
  }
  for (const j of [1, 2]) {
    assert.ok(col(j).every((x) => x === 0 || x === 1), `flip ${j}: not 0/1`);
    const f = frac(col(j), (x) => x === 1);
    assert.ok(Math.abs(f - 0.5) < band(0.5), `flip ${j}: frequency ${f}`);
  }
  const both = rows.filter((r) => r[1] === 1 && r[2] === 1).length / N;
  assert.ok(Math.abs(both - 0.25) < band(0.25), `both flips: ${both} (not independent)`);
  assert.ok(col(9).every((x) => x === 0) && col(10).every((x) => x === 0), "angle or swap drawn");
});

Deno.test("default augmentation: photometric ranges and probabilities per image, A and B apart", () => {
  const specs: [string, number, number, number, number][] = [
    // name, column offset, identity value, low, high
    ["brightness", 0, 0, -32 / 255, 32 / 255],
    ["contrast", 1, 1, 0.5, 1.5],
    ["saturation", 2, 1, 0.5, 1.5],
  ];
  for (const off of [3, 6]) {
    for (const [name, j, id, lo, hi] of specs) {
      const xs = col(off + j);
      const on = xs.filter((x) => x !== id);
      const f = on.length / N;
      assert.ok(Math.abs(f - 0.5) < band(0.5), `${name} (${off}): on with frequency ${f}`);
      assert.ok(
        on.every((x) => x >= lo && x < hi),
        `${name} (${off}): a value outside [${lo}, ${hi})`,
      );
      // Uniform on [lo, hi): each quarter of the range holds a quarter of the values.
      for (let q = 0; q < 4; q++) {
        const a = lo + (q * (hi - lo)) / 4, b = lo + ((q + 1) * (hi - lo)) / 4;
        const fq = frac(on, (x) => x >= a && x < b);
        assert.ok(
          Math.abs(fq - 0.25) < band(0.25, on.length),
          `${name} (${off}) quarter ${q}: ${fq}`,
        );
      }
    }
  }
  // A's and B's switches are independent draws (train_synth.py calls photometric() per image).
  for (let j = 0; j < 3; j++) {
    const id = j === 0 ? 0 : 1;
    const both = rows.filter((r) => r[3 + j] !== id && r[6 + j] !== id).length / N;
    assert.ok(Math.abs(both - 0.25) < band(0.25), `A and B both on (${j}): ${both}`);
  }
});
