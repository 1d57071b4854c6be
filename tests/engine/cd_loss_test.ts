import { backward, noGrad } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { cdLoss, type CdLossOptions } from "../../engine/ops/cd_loss.ts";
import { mulScalar } from "../../engine/ops/elementwise.ts";
import { scope } from "../../engine/scope.ts";
import { parameter, type Tensor, tensor } from "../../engine/tensor.ts";
import { assertClose, gradCheck, randArray, rng } from "../util.ts";

await initDevice();

interface Case {
  b: number;
  c: 1 | 2;
  h: number;
  w: number;
  lambda: number;
  weights?: [number, number];
  /** Fraction of ignored (255) pixels. */
  ignored: number;
}

/** Labels 0 / 1 / 255 with about `ignored` of them 255. */
function makeLabels(n: number, ignored: number, seed: number): Uint32Array {
  const r = rng(seed);
  return Uint32Array.from({ length: n }, () => (r() < ignored ? 255 : r() < 0.4 ? 1 : 0));
}

/** float64 loss, per-image losses and gradient w.r.t. the logits. */
function reference(
  z: ArrayLike<number>,
  y: ArrayLike<number>,
  t: ArrayLike<number> | null,
  { b, c, h, w, lambda, weights = [1, 1] }: Case,
) {
  const hw = h * w, n = b * c * hw;
  const grad = new Float64Array(n);
  const perImage: number[] = [];
  let wceAll = 0, wAll = 0, sqAll = 0;
  const dce: [number, number][] = [];
  for (let i = 0; i < b; i++) {
    let wce = 0, ws = 0, sq = 0;
    for (let p = 0; p < hw; p++) {
      const at = (k: number) => (i * c + k) * hw + p;
      const label = y[i * hw + p];
      const wt = label === 0 ? weights[0] : label === 1 ? weights[1] : 0;
      let ce = 0, g0 = 0, g1 = 0;
      if (c === 1) {
        const x = z[at(0)];
        ce = Math.log1p(Math.exp(-Math.abs(x))) + Math.max(x, 0) - x * label;
        g0 = 1 / (1 + Math.exp(-x)) - label;
      } else {
        const m = Math.max(z[at(0)], z[at(1)]);
        const e0 = Math.exp(z[at(0)] - m), e1 = Math.exp(z[at(1)] - m);
        ce = m + Math.log(e0 + e1) - z[at(label === 1 ? 1 : 0)];
        g0 = e0 / (e0 + e1) - (label === 1 ? 0 : 1);
        g1 = e1 / (e0 + e1) - (label === 1 ? 1 : 0);
      }
      if (wt > 0) {
        wce += wt * ce;
        ws += wt;
      }
      dce.push([wt * g0, wt * g1]);
      if (t) { for (let k = 0; k < c; k++) sq += (z[at(k)] - t[at(k)]) ** 2; }
    }
    perImage.push((ws > 0 ? wce / ws : 0) + lambda * sq / (c * hw));
    wceAll += wce;
    wAll += ws;
    sqAll += sq;
  }
  for (let i = 0; i < b; i++) {
    for (let p = 0; p < hw; p++) {
      for (let k = 0; k < c; k++) {
        const at = (i * c + k) * hw + p;
        const ceGrad = wAll > 0 ? dce[i * hw + p][k] / wAll : 0;
        grad[at] = ceGrad + (t ? (2 * lambda * (z[at] - t[at])) / n : 0);
      }
    }
  }
  return { loss: (wAll > 0 ? wceAll / wAll : 0) + lambda * sqAll / n, perImage, grad };
}

function data(cs: Case, seed: number) {
  const n = cs.b * cs.c * cs.h * cs.w;
  return {
    z: randArray(n, seed, -4, 4),
    y: makeLabels(cs.b * cs.h * cs.w, cs.ignored, seed + 1),
    t: cs.lambda !== 0 ? randArray(n, seed + 2, -4, 4) : null,
  };
}

function optsOf(cs: Case, teacher: Tensor | null): CdLossOptions {
  return {
    lambda: cs.lambda,
    teacher: teacher ?? undefined,
    classWeights: cs.weights,
  };
}

const CASES: Case[] = [
  { b: 3, c: 1, h: 5, w: 7, lambda: 0, ignored: 0.2 },
  { b: 3, c: 2, h: 5, w: 7, lambda: 0, ignored: 0.2 },
  { b: 2, c: 1, h: 7, w: 9, lambda: 0.5, weights: [0.4, 1.6], ignored: 0.15 },
  { b: 3, c: 2, h: 9, w: 5, lambda: 0.3, weights: [0.7, 2.5], ignored: 0.1 },
  // More than one 2048-pixel chunk per image.
  { b: 2, c: 2, h: 47, w: 53, lambda: 0.1, weights: [1, 3], ignored: 0.05 },
  { b: 2, c: 1, h: 53, w: 47, lambda: 2, ignored: 0.3 },
  // H·W a multiple of 4 (vec4 lanes), in one partial chunk and across two.
  { b: 3, c: 2, h: 6, w: 10, lambda: 0.4, weights: [0.5, 2], ignored: 0.2 },
  { b: 2, c: 1, h: 44, w: 51, lambda: 0.2, weights: [1.5, 0.5], ignored: 0.1 },
];

for (const cs of CASES) {
  Deno.test(`cdLoss ${JSON.stringify(cs)}: value, per-image and gradient`, async () => {
    const { z, y, t } = data(cs, 100 + cs.h * cs.c);
    const want = reference(z, y, t, cs);
    const shape = [cs.b, cs.c, cs.h, cs.w];
    const logits = parameter(z, shape);
    const labels = tensor(y, [cs.b, cs.h, cs.w], "u32");
    const teacher = t ? tensor(t, shape) : null;
    const { loss, perImage } = scope(() => {
      const r = cdLoss(logits, labels, optsOf(cs, teacher));
      backward(r.loss);
      return r;
    });
    assertClose([await loss.item()], [want.loss], { what: "loss", atol: 1e-6 });
    assertClose(await perImage.read(), want.perImage, { what: "perImage", atol: 1e-6 });
    assertClose(await logits.grad!.read(), want.grad, { what: "gradient", atol: 1e-8 });
    // Without autograd the kernel skips the gradient and must give the same values.
    const plain = noGrad(() => scope(() => cdLoss(logits, labels, optsOf(cs, teacher))));
    assertClose([await plain.loss.item()], [want.loss], { what: "no-grad loss", atol: 1e-6 });
    for (const x of [loss, perImage, logits, labels, teacher, plain.loss, plain.perImage]) {
      x?.dispose();
    }
  });
}

for (const cs of [CASES[2], CASES[3], CASES[6]]) {
  Deno.test(`cdLoss ${cs.c}-channel [${cs.h}×${cs.w}] gradient matches finite differences`, async () => {
    const { z, y, t } = data(cs, 300 + cs.c);
    const labels = tensor(y, [cs.b, cs.h, cs.w], "u32").keep();
    const teacher = tensor(t!, [cs.b, cs.c, cs.h, cs.w]).keep();
    // Scale the loss up so its finite differences stand well above f32 rounding.
    await gradCheck(
      (x) => mulScalar(cdLoss(x, labels, optsOf(cs, teacher)).loss, 100),
      [{ data: z, shape: [cs.b, cs.c, cs.h, cs.w] }],
      { eps: 1e-2, maxPoints: 20 },
    );
    labels.dispose();
    teacher.dispose();
  });
}

Deno.test("cdLoss: an image with every pixel ignored, and a batch with all ignored", async () => {
  const cs: Case = { b: 2, c: 2, h: 3, w: 5, lambda: 0.2, ignored: 0 };
  const { z, y, t } = data(cs, 7);
  y.fill(255, 0, 15);
  const want = reference(z, y, t, cs);
  const logits = parameter(z, [2, 2, 3, 5]);
  const teacher = tensor(t!, [2, 2, 3, 5]);
  const labels = tensor(y, [2, 3, 5], "u32");
  const r = scope(() => {
    const r = cdLoss(logits, labels, { lambda: 0.2, teacher });
    backward(r.loss);
    return r;
  });
  const per = await r.perImage.read();
  assertClose(per, want.perImage, { what: "perImage", atol: 1e-6 });
  assertClose([await r.loss.item()], [want.loss], { atol: 1e-6 });
  assertClose(await logits.grad!.read(), want.grad, { atol: 1e-8, what: "gradient" });
  // Everything ignored and no teacher: loss 0 and a zero gradient, not NaN.
  const none = tensor(new Uint32Array(30).fill(255), [2, 3, 5], "u32");
  const x = parameter(z, [2, 2, 3, 5]);
  const l = scope(() => {
    const { loss } = cdLoss(x, none);
    backward(loss);
    return loss;
  });
  assertClose([await l.item()], [0]);
  assertClose(await x.grad!.read(), new Float64Array(60));
  for (const t of [r.loss, r.perImage, logits, teacher, labels, none, x, l]) t.dispose();
});

Deno.test("cdLoss rejects a missing teacher and mismatched labels", () => {
  const z = tensor(randArray(30, 1), [2, 1, 3, 5]);
  const y = tensor(new Uint32Array(30), [2, 3, 5], "u32");
  const bad = tensor(new Uint32Array(30), [2, 5, 3], "u32");
  let threw = 0;
  for (const f of [() => cdLoss(z, y, { lambda: 1 }), () => cdLoss(z, bad)]) {
    try {
      scope(f);
    } catch {
      threw++;
    }
  }
  if (threw !== 2) throw new Error("expected both calls to throw");
  for (const t of [z, y, bad]) t.dispose();
});
