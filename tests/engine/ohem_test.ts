// OHEM cross-entropy (mmseg's OHEMPixelSampler + CrossEntropyLoss) against a float64 reference:
// the GPU threshold in both branches (thresh, and the k-th smallest probability found by radix
// select), ties at the threshold, ignored pixels, the fused λ·MSE term, finite differences.

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { backward } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { cdLoss, ohemThreshold } from "../../engine/ops/cd_loss.ts";
import { scope } from "../../engine/scope.ts";
import { parameter, tensor } from "../../engine/tensor.ts";
import { assertClose, gradCheck, rng } from "../util.ts";

await initDevice();

interface Case {
  what: string;
  b: number;
  h: number;
  w: number;
  thresh: number;
  minKept: number;
  /** Logit-gap range: p of the true class is sigmoid(gap), gap in [lo, hi). */
  gap: [number, number];
  ignored: number;
  lambda?: number;
  /** Pixels given the same logits as the pixel at rank k (exact ties at the threshold). */
  ties?: number;
}

interface Data {
  z: Float32Array;
  y: Uint32Array;
  t: Float32Array;
}

function p64(z: ArrayLike<number>, y: number, at0: number, at1: number): number {
  const m = Math.max(z[at0], z[at1]);
  const e0 = Math.exp(z[at0] - m), e1 = Math.exp(z[at1] - m);
  return (y === 1 ? e1 : e0) / (e0 + e1);
}

/** Logits whose true-class p is sigmoid(gap), labels with a fraction ignored, a teacher. */
function makeData(cs: Case, seed: number): Data {
  const r = rng(seed);
  const hw = cs.h * cs.w, n = cs.b * hw;
  const z = new Float32Array(2 * n), y = new Uint32Array(n), t = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) {
    const b = Math.floor(i / hw), e = i % hw;
    const at0 = (2 * b) * hw + e, at1 = at0 + hw;
    y[i] = r() < cs.ignored ? 255 : r() < 0.4 ? 1 : 0;
    const base = 2 * r() - 1;
    let gap = cs.gap[0] + (cs.gap[1] - cs.gap[0]) * r();
    // Keep p clear of thresh: a pixel within rounding of it would make the test flaky.
    if (Math.abs(1 / (1 + Math.exp(-gap)) - cs.thresh) < 1e-3) gap += 0.05;
    z[y[i] === 1 ? at1 : at0] = base + gap;
    z[y[i] === 1 ? at0 : at1] = base;
    t[at0] = 2 * r() - 1;
    t[at1] = 2 * r() - 1;
  }
  return { z, y, t };
}

/** float64 reference: threshold, loss, per-image losses, gradient. */
function reference(cs: Case, d: Data) {
  const hw = cs.h * cs.w, n = cs.b * hw, lambda = cs.lambda ?? 0;
  const p = new Float64Array(n).fill(NaN);
  for (let i = 0; i < n; i++) {
    if (d.y[i] > 1) continue;
    const b = Math.floor(i / hw), e = i % hw;
    p[i] = p64(d.z, d.y[i], (2 * b) * hw + e, (2 * b + 1) * hw + e);
  }
  const sorted = [...p].filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  const k = Math.min(cs.minKept * cs.b, sorted.length - 1);
  const thr = sorted.length ? Math.max(sorted[k], Math.fround(cs.thresh)) : cs.thresh;
  const grad = new Float64Array(2 * n);
  const perImage = new Float64Array(cs.b);
  let ce = 0, sq = 0, kept = 0;
  for (let i = 0; i < n; i++) {
    const b = Math.floor(i / hw), e = i % hw;
    const at = [(2 * b) * hw + e, (2 * b + 1) * hw + e];
    let sqi = 0;
    for (const a of at) {
      const dz = d.z[a] - d.t[a];
      sqi += dz * dz;
      grad[a] += (2 * lambda * dz) / (2 * n);
    }
    sq += sqi;
    perImage[b] += (lambda * sqi) / (2 * hw);
    if (!(p[i] < thr)) continue; // ignored (NaN) or not kept
    kept++;
    const y = d.y[i];
    const m = Math.max(d.z[at[0]], d.z[at[1]]);
    const e0 = Math.exp(d.z[at[0]] - m), e1 = Math.exp(d.z[at[1]] - m);
    const cei = m + Math.log(e0 + e1) - d.z[at[y]];
    ce += cei;
    perImage[b] += cei / hw;
    grad[at[0]] += (e0 / (e0 + e1) - (y === 0 ? 1 : 0)) / n;
    grad[at[1]] += (e1 / (e0 + e1) - (y === 1 ? 1 : 0)) / n;
  }
  return { thr, k, sorted, kept, loss: ce / n + (lambda * sq) / (2 * n), perImage, grad };
}

/** Give `ties` pixels the logits and label of the pixel at sorted rank k. */
function addTies(cs: Case, d: Data): void {
  const hw = cs.h * cs.w;
  const ref = reference(cs, d);
  const target = ref.sorted[ref.k];
  let src = -1;
  for (let i = 0; i < d.y.length && src < 0; i++) {
    if (d.y[i] > 1) continue;
    const b = Math.floor(i / hw), e = i % hw;
    if (p64(d.z, d.y[i], 2 * b * hw + e, (2 * b + 1) * hw + e) === target) src = i;
  }
  const sb = Math.floor(src / hw), se = src % hw;
  for (let j = 0, i = d.y.length - 1; j < cs.ties!; i -= 7, j++) {
    const b = Math.floor(i / hw), e = i % hw;
    d.y[i] = d.y[src];
    d.z[2 * b * hw + e] = d.z[2 * sb * hw + se];
    d.z[(2 * b + 1) * hw + e] = d.z[(2 * sb + 1) * hw + se];
  }
}

const CASES: Case[] = [
  // Most p < 0.7: more than k below thresh, so the threshold is thresh itself.
  { what: "thresh branch", b: 2, h: 7, w: 9, thresh: 0.7, minKept: 10, gap: [-2, 2], ignored: 0.2 },
  // Confident pixels: few below 0.7, the threshold is the k-th smallest p (radix select).
  {
    what: "k-th branch",
    b: 3,
    h: 37,
    w: 41,
    thresh: 0.7,
    minKept: 300,
    gap: [0, 6],
    ignored: 0.15,
  },
  {
    what: "k-th branch, ties at the threshold, λ·MSE",
    b: 2,
    h: 13,
    w: 11,
    thresh: 0.7,
    minKept: 40,
    gap: [0.5, 5],
    ignored: 0.1,
    lambda: 0.3,
    ties: 6,
  },
  // nValid ≤ minKept·B: the threshold is the largest p; only the pixels at it are dropped.
  {
    what: "fewer valid than min_kept",
    b: 1,
    h: 5,
    w: 7,
    thresh: 0.7,
    minKept: 100,
    gap: [0, 4],
    ignored: 0.3,
  },
];

for (const cs of CASES) {
  Deno.test(`OHEM CE ${cs.what}: threshold, loss, per-image, gradient vs float64`, async () => {
    const d = makeData(cs, 17);
    if (cs.ties) addTies(cs, d);
    const ref = reference(cs, d);
    const hw = cs.h * cs.w;
    const z = parameter(d.z, [cs.b, 2, cs.h, cs.w], "z");
    const labels = tensor(d.y, [cs.b, cs.h, cs.w], "u32");
    const teacher = tensor(d.t, [cs.b, 2, cs.h, cs.w]);
    const o = { batch: cs.b, pixels: hw, thresh: cs.thresh, minKept: cs.minKept };
    const st = scope(() => ohemThreshold(z, labels, o).state.keep());
    const thr = new Float32Array((await st.read() as Uint32Array).slice(3, 4).buffer)[0];
    st.dispose();
    assertClose([thr], [ref.thr], { atol: 1e-6, rtol: 0, what: "threshold" });
    if (cs.what.startsWith("thresh")) assertEquals(thr, Math.fround(0.7));
    else assert(thr > Math.fround(0.7), `threshold ${thr} should come from the k-th value`);
    if (cs.ties) {
      const tied = ref.sorted.filter((x) => x === ref.sorted[ref.k]).length;
      assert(tied > cs.ties, `${tied} pixels tie at the threshold`);
    }
    const { loss, perImage } = scope(() => {
      const r = cdLoss(z, labels, {
        lambda: cs.lambda ?? 0,
        teacher: cs.lambda ? teacher : undefined,
        ohem: { thresh: cs.thresh, minKept: cs.minKept },
      });
      backward(r.loss);
      return { loss: r.loss.keep(), perImage: r.perImage.keep() };
    });
    assertClose([await loss.item()], [ref.loss], { atol: 1e-6, rtol: 1e-5, what: "loss" });
    assertClose(await perImage.read(), ref.perImage, { atol: 1e-6, rtol: 1e-5, what: "per image" });
    assertClose(await z.grad!.read(), ref.grad, { atol: 1e-7, rtol: 1e-4, what: "gradient" });
    assert(ref.kept > 0 && ref.kept < d.y.filter((y) => y <= 1).length, `kept ${ref.kept}`);
    for (const x of [loss, perImage, z, labels, teacher]) x.dispose();
  });
}

Deno.test("OHEM CE: finite differences in both branches (odd shapes, ignored pixels)", async () => {
  for (const cs of [CASES[0], { ...CASES[2], ties: 0 }]) {
    const d = makeData({ ...cs, gap: cs.gap }, 5);
    const labels = tensor(d.y, [cs.b, cs.h, cs.w], "u32");
    const teacher = tensor(d.t, [cs.b, 2, cs.h, cs.w]);
    await gradCheck(
      (x) =>
        cdLoss(x, labels, {
          lambda: cs.lambda ?? 0,
          teacher: cs.lambda ? teacher : undefined,
          ohem: { thresh: cs.thresh, minKept: cs.minKept },
        }).loss,
      [{ data: d.z, shape: [cs.b, 2, cs.h, cs.w] }],
      { eps: 1e-3, atol: 1e-4, rtol: 2e-2, maxPoints: 40 },
    );
    labels.dispose();
    teacher.dispose();
  }
});

Deno.test("OHEM CE: every pixel ignored gives 0; 1-channel logits are refused", async () => {
  const y = new Uint32Array(2 * 15).fill(255);
  const z = tensor(new Float32Array(2 * 2 * 15).fill(0.3), [2, 2, 3, 5]);
  const labels = tensor(y, [2, 3, 5], "u32");
  const l = scope(() => cdLoss(z, labels, { ohem: { thresh: 0.7, minKept: 3 } }).loss.keep());
  assertEquals(await l.item(), 0);
  let msg = "";
  try {
    cdLoss(tensor(new Float32Array(30), [2, 1, 3, 5]), labels, {
      ohem: { thresh: 0.7, minKept: 1 },
    });
  } catch (e) {
    msg = (e as Error).message;
  }
  assert(msg.includes("OHEM needs 2-channel"), msg);
  for (const x of [l, z, labels]) x.dispose();
});
