// Test helpers: a seeded generator, float64 comparisons and a finite-difference gradient check
// that runs the real engine on the real (software or hardware) adapter.

import { backward, noGrad } from "../engine/autograd.ts";
import { initDevice } from "../engine/device.ts";
import { Random } from "../engine/random.ts";
import { scope } from "../engine/scope.ts";
import { mul } from "../engine/ops/elementwise.ts";
import { sum } from "../engine/ops/reduce.ts";
import { parameter, type Shape, type Tensor, tensor, view } from "../engine/tensor.ts";
import { prod } from "../kernels/common.ts";

export { initDevice };

/** Deterministic PRNG: the engine's seeded generator as a function. */
export function rng(seed: number): () => number {
  const r = new Random(seed);
  return () => r.next();
}

/** Uniform values in [lo, hi). */
export function randArray(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const r = rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * r();
  return a;
}

/** A random training batch of n pairs of size² (seeds 1, 2, 3): images in [−1, 1], 0/1 labels. */
export function randomPairBatch(n: number, size: number): { a: Tensor; b: Tensor; labels: Tensor } {
  const shape = [n, 3, size, size];
  return {
    a: tensor(randArray(n * 3 * size * size, 1), shape),
    b: tensor(randArray(n * 3 * size * size, 2), shape),
    labels: tensor(
      Array.from(randArray(n * size * size, 3), (v) => (v > 0 ? 1 : 0)),
      [n, size, size],
      "u32",
    ),
  };
}

export function randTensor(shape: Shape, seed: number, lo = -1, hi = 1): Tensor {
  return tensor(randArray(prod(shape), seed, lo, hi), shape);
}

/** float64 reference of the conv epilogue's activations (PReLU with the given slope). */
export function activationRef(a: string, z: number, slope = 0.25): number {
  switch (a) {
    case "relu":
      return Math.max(z, 0);
    case "sigmoid":
      return 1 / (1 + Math.exp(-z));
    case "silu":
      return z / (1 + Math.exp(-z));
    case "prelu":
      return z > 0 ? z : slope * z;
    case "none":
      return z;
  }
  throw new Error(`activationRef: unknown activation ${a}`);
}

/** Assert |actual - expected| <= atol + rtol·|expected| everywhere, naming the first offender. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  opts: { atol?: number; rtol?: number; what?: string } = {},
): void {
  const { atol = 1e-5, rtol = 1e-4, what = "values" } = opts;
  if (actual.length !== expected.length) {
    throw new Error(`${what}: length ${actual.length} != expected ${expected.length}`);
  }
  let worst = -1, worstErr = 0;
  for (let i = 0; i < actual.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    const tol = atol + rtol * Math.abs(expected[i]);
    if (!(err <= tol) && (worst < 0 || err - tol > worstErr)) {
      worst = i;
      worstErr = err - tol;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${what}: index ${worst}: got ${actual[worst]}, expected ${
        expected[worst]
      } (atol ${atol}, rtol ${rtol})`,
    );
  }
}

export interface GradCheckOptions {
  /** Finite-difference step. */
  eps?: number;
  atol?: number;
  rtol?: number;
  /** Check at most this many coordinates per input (spread over the tensor). */
  maxPoints?: number;
  seed?: number;
}

/**
 * Compare autograd's gradient of L = Σ r ⊙ fn(inputs) (r random, fixed) with central finite
 * differences of the same function, evaluated on the GPU in f32 and summed on the CPU in f64.
 */
export async function gradCheck(
  fn: (...xs: Tensor[]) => Tensor,
  inputs: { data: Float32Array; shape: Shape }[],
  opts: GradCheckOptions = {},
): Promise<void> {
  const { eps = 1e-2, atol = 2e-3, rtol = 2e-2, maxPoints = 24, seed = 7 } = opts;
  await initDevice();
  let weights: Float64Array | null = null;
  const lossOf = async (datas: Float32Array[]): Promise<number> => {
    const out = scope(() => noGrad(() => fn(...datas.map((d, k) => tensor(d, inputs[k].shape)))));
    const y = await out.read();
    out.dispose();
    weights ??= Float64Array.from(randArray(y.length, seed + 1));
    let s = 0;
    for (let i = 0; i < y.length; i++) s += weights[i] * y[i];
    return s;
  };
  await lossOf(inputs.map((i) => i.data));
  const params = inputs.map((i, k) => parameter(i.data, i.shape, `input${k}`));
  const analytic = await (async () => {
    const grads: Float32Array[] = [];
    const w = tensor(Float32Array.from(weights!));
    scope(() => {
      const y = fn(...params);
      const l = sum(mul(y, view(w, y.shape)));
      backward(l);
    });
    for (const p of params) {
      grads.push(p.grad ? (await p.grad.read()) as Float32Array : new Float32Array(p.size));
      p.dispose();
    }
    w.dispose();
    return grads;
  })();
  for (let k = 0; k < inputs.length; k++) {
    const n = inputs[k].data.length;
    const step = Math.max(1, Math.floor(n / maxPoints));
    for (let i = 0; i < n; i += step) {
      const datas = inputs.map((x) => Float32Array.from(x.data));
      datas[k][i] = inputs[k].data[i] + eps;
      const lp = await lossOf(datas);
      datas[k][i] = inputs[k].data[i] - eps;
      const lm = await lossOf(datas);
      const numeric = (lp - lm) / (2 * eps);
      const got = analytic[k][i];
      if (!(Math.abs(got - numeric) <= atol + rtol * Math.abs(numeric))) {
        throw new Error(
          `gradient of input ${k} at ${i}: autograd ${got}, finite difference ${numeric}`,
        );
      }
    }
  }
}
