import assert from "node:assert/strict";
import { backward } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { bclLoss } from "../../engine/ops/bcl_loss.ts";
import { scope } from "../../engine/scope.ts";
import { parameter, tensor } from "../../engine/tensor.ts";
import { assertClose, gradCheck, randArray, rng } from "../util.ts";

await initDevice();

/** Float64 reference written as Open-CD's bcl_loss: mask = t ≠ ignore, t ← t·mask, n_u =
 * Σ(1 − t) + eps (ignored pixels count there), n_c = Σ t + eps; value and dL/dd. */
function reference(d: ArrayLike<number>, labels: ArrayLike<number>, margin: number, eps: number) {
  let nu = eps, nc = eps;
  for (const l of Array.from(labels)) {
    const t = l === 255 ? 0 : l;
    nu += 1 - t;
    nc += t;
  }
  let loss = 0;
  const grad = new Float64Array(d.length);
  for (let i = 0; i < d.length; i++) {
    const mask = labels[i] === 255 ? 0 : 1;
    const t = labels[i] * mask;
    const h = Math.max(margin - d[i], 0);
    loss += ((1 - t) * d[i] * d[i] * mask) / nu + (t * h * h) / nc;
    grad[i] = (2 * (1 - t) * d[i] * mask) / nu - (2 * t * h) / nc;
  }
  return { loss, grad };
}

/** Distances in [0, 3], kept 0.05 away from the hinge at the margin 2; labels 0, 1 and 255. */
function inputs(n: number, seed: number) {
  const r = rng(seed);
  const d = randArray(n, seed, 0, 3).map((x) => Math.abs(x - 2) < 0.05 ? x + 0.1 : x);
  const labels = Uint32Array.from({ length: n }, () => {
    const u = r();
    return u < 0.4 ? 0 : u < 0.9 ? 1 : 255;
  });
  return { d: Float32Array.from(d), labels };
}

Deno.test("bclLoss matches a float64 reference, value and gradient (odd shapes, eps 255 and 1e-4)", async () => {
  for (const shape of [[1, 1, 5, 7], [3, 1, 9, 11], [2, 1, 67, 45]]) {
    for (const eps of [255, 1e-4]) {
      const n = shape[0] * shape[2] * shape[3];
      const { d, labels } = inputs(n, n + Math.round(eps));
      const ref = reference(d, labels, 2, eps);
      const x = parameter(d, shape, "d");
      const loss = scope(() => {
        const l = bclLoss(x, tensor(labels, [shape[0], shape[2], shape[3]], "u32"), { eps });
        backward(l);
        return l;
      });
      const what = `bcl [${shape}] eps ${eps}`;
      assertClose(await loss.read(), [ref.loss], { atol: 0, rtol: 2e-6, what });
      const scale = Math.max(...ref.grad.map(Math.abs));
      assertClose(await x.grad!.read(), ref.grad, { atol: 1e-6 * scale, rtol: 1e-5, what });
      loss.dispose();
      x.dispose();
    }
  }
});

Deno.test("bclLoss gradient: finite differences", async () => {
  const shape = [2, 1, 5, 7];
  const { d, labels } = inputs(70, 11);
  const lab = tensor(labels, [2, 5, 7], "u32").keep();
  await gradCheck((x) => bclLoss(x, lab, { eps: 1e-3 }), [{ data: d, shape }], {
    maxPoints: 70,
    eps: 1e-2,
  });
  lab.kept = false;
  lab.dispose();
});

Deno.test("bclLoss refuses mismatched shapes and dtypes", () => {
  scope(() => {
    const lab = tensor(new Uint32Array(6), [1, 2, 3], "u32");
    assert.throws(() => bclLoss(tensor(new Float32Array(8), [1, 1, 2, 4]), lab), /distance/);
    assert.throws(
      () =>
        bclLoss(tensor(new Float32Array(6), [1, 1, 2, 3]), tensor(new Float32Array(6), [1, 2, 3])),
      /labels/,
    );
  });
});
