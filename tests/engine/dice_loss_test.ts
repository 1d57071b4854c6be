import { initDevice } from "../../engine/device.ts";
import { diceLoss } from "../../engine/ops/dice_loss.ts";
import { scope } from "../../engine/scope.ts";
import { tensor } from "../../engine/tensor.ts";
import { assertClose, gradCheck, randArray, rng } from "../util.ts";

await initDevice();

/** Float64 reference written as mmseg's dice_loss after _expand_onehot_labels_dice with one
 * channel: g = one_hot(clamp(label, 0, 1), 2)[..., 0]; per image 1 − 2a / (b + c), mean. */
function reference(z: ArrayLike<number>, labels: ArrayLike<number>, batch: number, eps: number) {
  const n = z.length / batch;
  let total = 0;
  for (let k = 0; k < batch; k++) {
    let a = 0, b = eps, c = eps;
    for (let i = k * n; i < (k + 1) * n; i++) {
      const p = 1 / (1 + Math.exp(-z[i]));
      const g = Math.min(Math.max(labels[i], 0), 1) === 0 ? 1 : 0;
      a += p * g;
      b += p * p;
      c += g * g;
    }
    total += 1 - (2 * a) / (b + c);
  }
  return total / batch;
}

function labelsOf(n: number, seed: number): Uint32Array {
  const r = rng(seed);
  return Uint32Array.from({ length: n }, () => {
    const u = r();
    return u < 0.5 ? 0 : u < 0.9 ? 1 : 255;
  });
}

Deno.test("diceLoss matches a float64 reference (odd shapes, ignored labels)", async () => {
  for (const shape of [[1, 1, 5, 7], [3, 1, 9, 13]]) {
    const n = shape[0] * shape[2] * shape[3];
    const z = randArray(n, n, -3, 3);
    const labels = labelsOf(n, n + 1);
    const out = scope(() =>
      diceLoss(tensor(z, shape), tensor(labels, [shape[0], shape[2], shape[3]], "u32"))
    );
    assertClose(await out.read(), [reference(z, labels, shape[0], 1e-3)], {
      atol: 1e-6,
      rtol: 1e-5,
      what: `dice [${shape}]`,
    });
    out.dispose();
  }
});

Deno.test("diceLoss gradient: finite differences", async () => {
  const shape = [2, 1, 5, 7];
  const lab = tensor(labelsOf(70, 3), [2, 5, 7], "u32").keep();
  await gradCheck((x) => diceLoss(x, lab), [{ data: randArray(70, 4, -2, 2), shape }], {
    maxPoints: 70,
  });
  lab.kept = false;
  lab.dispose();
});
