// Dropout layers. Masks come from a counter: each forward call in training takes the next seed of
// a stream that the trainer resets from (run seed, step), so a resumed run draws the same masks.

import { dropout, dropout2d, dropPath, reluDropout2d } from "../ops/dropout.ts";
import type { Tensor } from "../tensor.ts";
import { type Layer, Module } from "./module.ts";

let streamSeed = 0x5eed;
let calls = 0;

/** Restart the mask stream, e.g. at every training step with (seed, step). */
export function resetDropoutStream(seed: number, step = 0): void {
  streamSeed = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(step, 0xc2b2ae35)) >>> 0;
  calls = 0;
}

function nextSeed(): number {
  calls++;
  return (streamSeed + Math.imul(calls, 0x27d4eb2f)) >>> 0;
}

export class Dropout extends Module implements Layer {
  constructor(readonly p = 0.5) {
    super();
  }
  forward(x: Tensor): Tensor {
    return dropout(x, this.p, { training: this.training, seed: this.training ? nextSeed() : 0 });
  }
}

/** Zeroes whole channels. */
export class Dropout2d extends Module implements Layer {
  constructor(readonly p = 0.5) {
    super();
  }
  forward(x: Tensor): Tensor {
    return dropout2d(x, this.p, { training: this.training, seed: this.training ? nextSeed() : 0 });
  }
  /** dropout2d(relu(x)), fused; the same masks as forward(relu(x)). */
  forwardRelu(x: Tensor): Tensor {
    return reluDropout2d(x, this.p, this.nextMask());
  }
  /** The options of this layer's next mask (drawing its seed), for an op that fuses the
   * dropout into another pass, e.g. batchNorm2d's `post`. */
  nextMask(): { p: number; training: boolean; seed: number } {
    return { p: this.p, training: this.training, seed: this.training ? nextSeed() : 0 };
  }
}

/** Stochastic depth on a residual branch: the whole sample's branch is dropped with
 * probability p in training (torchvision's StochasticDepth, mode "row"). */
export class StochasticDepth extends Module implements Layer {
  constructor(readonly p: number) {
    super();
  }
  forward(x: Tensor): Tensor {
    return dropPath(x, this.p, { training: this.training, seed: this.training ? nextSeed() : 0 });
  }
}
