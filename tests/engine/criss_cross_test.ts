import { backward } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { crissCrossAttention } from "../../engine/ops/criss_cross.ts";
import { mul } from "../../engine/ops/elementwise.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { scope } from "../../engine/scope.ts";
import { parameter, tensor } from "../../engine/tensor.ts";
import { prod } from "../../kernels/common.ts";
import { assertClose, gradCheck, randArray } from "../util.ts";

await initDevice();

/** Float64 reference written as mmcv's CrissCrossAttention forward: column energies with −inf
 * on the diagonal, row energies, one softmax over the H + W, then the two value sums. */
function reference(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  [b, cq, h, w]: number[],
  c: number,
): Float64Array {
  const out = new Float64Array(b * c * h * w);
  const at = (ch: number, n: number, y: number, x: number, cs: number) =>
    ((n * cs + ch) * h + y) * w + x;
  for (let n = 0; n < b; n++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const e = new Float64Array(h + w);
        for (let i = 0; i < h; i++) {
          let s = 0;
          for (let ch = 0; ch < cq; ch++) s += q[at(ch, n, y, x, cq)] * k[at(ch, n, i, x, cq)];
          e[i] = i === y ? -Infinity : s;
        }
        for (let j = 0; j < w; j++) {
          let s = 0;
          for (let ch = 0; ch < cq; ch++) s += q[at(ch, n, y, x, cq)] * k[at(ch, n, y, j, cq)];
          e[h + j] = s;
        }
        const m = Math.max(...e);
        const p = e.map((z) => Math.exp(z - m));
        const t = p.reduce((a, z) => a + z, 0);
        for (let ch = 0; ch < c; ch++) {
          let s = 0;
          for (let i = 0; i < h; i++) s += p[i] * v[at(ch, n, i, x, c)];
          for (let j = 0; j < w; j++) s += p[h + j] * v[at(ch, n, y, j, c)];
          out[at(ch, n, y, x, c)] = s / t;
        }
      }
    }
  }
  return out;
}

// Odd shapes: H ≠ W, a single row or column, channel counts that fill no vec4.
const CASES = [
  { qk: [2, 3, 5, 7], c: 4 },
  { qk: [1, 2, 6, 3], c: 5 },
  { qk: [3, 1, 1, 4], c: 3 },
  { qk: [1, 5, 9, 9], c: 7 },
];

function inputs(qk: number[], c: number, seed: number) {
  const vShape = [qk[0], c, qk[2], qk[3]];
  // Energies of order 1–10, so the softmax is neither flat nor one-hot.
  return {
    q: randArray(prod(qk), seed, -1.5, 1.5),
    k: randArray(prod(qk), seed + 1, -1.5, 1.5),
    v: randArray(prod(vShape), seed + 2),
    vShape,
  };
}

Deno.test("criss-cross attention matches a float64 reference (odd shapes)", async () => {
  for (const [n, { qk, c }] of CASES.entries()) {
    const { q, k, v, vShape } = inputs(qk, c, 10 * n);
    const out = scope(() => crissCrossAttention(tensor(q, qk), tensor(k, qk), tensor(v, vShape)));
    assertClose(await out.read(), reference(q, k, v, qk, c), {
      atol: 2e-6,
      rtol: 1e-5,
      what: `criss-cross [${qk}] C=${c}`,
    });
    out.dispose();
  }
});

Deno.test("criss-cross attention gradients: every element against float64 central differences", async () => {
  for (const [n, { qk, c }] of CASES.entries()) {
    const { q, k, v, vShape } = inputs(qk, c, 10 * n + 3);
    const r = randArray(prod(vShape), 10 * n + 7);
    // d Σ r ⊙ out / d input, by central differences of the float64 reference.
    const lossRef = (qq: ArrayLike<number>, kk: ArrayLike<number>, vv: ArrayLike<number>) =>
      reference(qq, kk, vv, qk, c).reduce((s, y, i) => s + r[i] * y, 0);
    const numeric = (which: 0 | 1 | 2) => {
      const base = [q, k, v].map((a) => Float64Array.from(a));
      const g = new Float64Array(base[which].length);
      for (let i = 0; i < g.length; i++) {
        const x0 = base[which][i], eps = 1e-6;
        base[which][i] = x0 + eps;
        const lp = lossRef(base[0], base[1], base[2]);
        base[which][i] = x0 - eps;
        const lm = lossRef(base[0], base[1], base[2]);
        base[which][i] = x0;
        g[i] = (lp - lm) / (2 * eps);
      }
      return g;
    };
    const ps = [parameter(q, qk, "q"), parameter(k, qk, "k"), parameter(v, vShape, "v")];
    scope(() => {
      const y = crissCrossAttention(ps[0], ps[1], ps[2]);
      backward(sum(mul(y, tensor(r, vShape))));
    });
    for (const which of [0, 1, 2] as const) {
      assertClose(await ps[which].grad!.read(), numeric(which), {
        atol: 5e-6,
        rtol: 1e-4,
        what: `criss-cross d${"qkv"[which]} [${qk}] C=${c}`,
      });
      ps[which].dispose();
    }
  }
});

Deno.test("criss-cross attention gradients: finite differences on the GPU", async () => {
  const qk = [2, 3, 5, 4], c = 3;
  const { q, k, v, vShape } = inputs(qk, c, 77);
  await gradCheck(
    (a, b, d) => crissCrossAttention(a, b, d),
    [{ data: q, shape: qk }, { data: k, shape: qk }, { data: v, shape: vShape }],
    { maxPoints: 30 },
  );
});
