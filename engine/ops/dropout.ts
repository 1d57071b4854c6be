// Dropout and channel dropout (dropout2d). The mask is a hash of (seed, index) computed on the
// fly in forward and again in backward, so it is never stored.
//
// The seed changes every step while the kernel text must not, so it reaches the GPU through a
// ring of 256-byte slots written with queue.writeBuffer (slot_ring.ts, as optim/adamw.ts does):
// a slot is reused only once a submit has carried the dispatch that read it.

import { dropoutKernel } from "../../kernels/dropout.ts";
import { prod } from "../../kernels/common.ts";
import { record } from "../autograd.ts";
import { device } from "../device.ts";
import { type Operand, run } from "../launch.ts";
import type { Binding } from "../recorder.ts";
import { SlotRing } from "../slot_ring.ts";
import { empty, type Tensor } from "../tensor.ts";
import { f } from "../../kernels/common.ts";
import { map, mulScalar, relu } from "./elementwise.ts";
import { reshape } from "./shape.ts";

export interface DropoutOptions {
  /** Off (identity) unless true. */
  training: boolean;
  /** Any integer; taken modulo 2³². Same seed, same mask. */
  seed: number;
}

const SLOT = 256;
const RING = 64;
let ring: GPUBuffer | null = null;
let ringDevice: GPUDevice | null = null;
const slots = new SlotRing(RING);

/** A binding holding `seed` in a ring slot that no pending dispatch reads. */
export function seedBinding(seed: number): Binding {
  if (!ring || ringDevice !== device()) {
    ringDevice = device();
    ring = ringDevice.createBuffer({
      size: RING * SLOT,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      label: "dropout_seeds",
    });
    slots.reset();
  }
  const slot = slots.take();
  device().queue.writeBuffer(ring, slot * SLOT, new Uint32Array([seed >>> 0, 0, 0, 0]));
  return { buffer: ring, offset: slot * SLOT, size: 16 };
}

/** The masked launch into any range: the same seed gives the same mask. */
function maskInto(x: Tensor, p: number, unit: number, seed: number, withRelu = false) {
  const k = dropoutKernel({ n: x.size, p, unit, relu: withRelu });
  return (out: Operand) => run(k, [x, seedBinding(seed)], [out]);
}

function masked(x: Tensor, p: number, unit: number, seed: number, withRelu = false): Tensor {
  const out = empty(x.shape);
  maskInto(x, p, unit, seed, withRelu)(out);
  return out;
}

function dropoutWith(name: string, x: Tensor, p: number, unit: number, o: DropoutOptions): Tensor {
  if (!(p >= 0 && p <= 1)) throw new Error(`${name}: p must lie in [0, 1], got ${p}`);
  if (!o.training || p === 0) return reshape(x, x.shape);
  if (p === 1) return mulScalar(x, 0);
  const y = masked(x, p, unit, o.seed);
  // The same mask and scale applied to the gradient: regenerated from the seed. The output's
  // recipe (for an evicted y) too, from x, which outlives y's backward readers.
  return record(y, [x], name, (g) => [masked(g, p, unit, o.seed)], maskInto(x, p, unit, o.seed));
}

/** Zero each element with probability p and scale the rest by 1/(1 − p) (training only). */
export function dropout(x: Tensor, p: number, o: DropoutOptions): Tensor {
  return dropoutWith("dropout", x, p, 1, o);
}

/** Zero whole channels of [B, C, ...] with probability p, scale the rest by 1/(1 − p). */
export function dropout2d(x: Tensor, p: number, o: DropoutOptions): Tensor {
  if (x.ndim < 2) throw new Error(`dropout2d needs [B, C, ...], got ${x.describe()}`);
  return dropoutWith("dropout2d", x, p, prod(x.shape.slice(2)), o);
}

/** Stochastic depth ("row" mode): drop the whole sample with probability p, scale the rest by
 * 1/(1 − p). Applied to a residual branch before the skip is added. */
export function dropPath(x: Tensor, p: number, o: DropoutOptions): Tensor {
  if (x.ndim < 1) throw new Error(`dropPath needs [B, ...], got ${x.describe()}`);
  return dropoutWith("drop_path", x, p, prod(x.shape.slice(1)), o);
}

/** relu(x) then dropout2d, in one pass each way (FC-Siam's conv → BN → ReLU → Dropout2d). The
 * gradient needs no mask: an output above 0 was kept and positive, so it passes g / (1 − p). */
export function reluDropout2d(x: Tensor, p: number, o: DropoutOptions): Tensor {
  if (x.ndim < 2) throw new Error(`reluDropout2d needs [B, C, ...], got ${x.describe()}`);
  if (!(p >= 0 && p <= 1)) throw new Error(`reluDropout2d: p must lie in [0, 1], got ${p}`);
  if (!o.training || p === 0) return relu(x);
  if (p === 1) return mulScalar(x, 0);
  const y = masked(x, p, prod(x.shape.slice(2)), o.seed, true);
  return record(y, [x], "reluDropout2d", (g) => [
    map("relu_dropout2d_grad", `select(0.0, a * ${f(1 / (1 - p))}, b > 0.0)`, [g, y]),
  ]);
}
