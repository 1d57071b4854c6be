// The first four stages of EfficientNet-b4 (torchvision's `features[0..3]`), as TinyCD uses
// them: stem 3→48 (stride 2), MBConv stages of 24 (k3), 32 (k3, stride 2) and 56 (k5, stride 2)
// channels. Names follow torchvision: `N.M.block.K...`, SE as `fc1`/`fc2`.
// Stochastic depth as torchvision builds b4: block i of the 32 in the whole network drops its
// residual branch with probability 0.2·i/32 in training (blocks 0–9 live in these stages).

import { Conv2d } from "../engine/nn/conv.ts";
import { StochasticDepth } from "../engine/nn/dropout.ts";
import { ConvBnAct } from "../engine/nn/conv_bn_act.ts";
import { foldedWeights, foldsNow } from "../engine/nn/fold.ts";
import { Module, ModuleList } from "../engine/nn/module.ts";
import { BatchNorm2d } from "../engine/nn/norm.ts";
import { add, mul } from "../engine/ops/elementwise.ts";
import { matmulMap } from "../engine/ops/matmul.ts";
import { adaptiveAvgPool2d } from "../engine/ops/pool.ts";
import { reshape } from "../engine/ops/shape.ts";
import type { Random } from "../engine/random.ts";
import { kaimingFanOut } from "./init.ts";
import type { Tensor } from "../engine/tensor.ts";

/** torchvision's Conv2dNormActivation: conv (no bias) → BatchNorm → SiLU or none, children "0"
 * (conv) and "1" (BN); ConvBnAct fuses the SiLU into the BN's passes in training and folds the BN
 * into the conv in eval. */
function convBnAct(
  cin: number,
  cout: number,
  kernel: number,
  stride: number,
  groups: number,
  act: "silu" | "none",
  rng: Random,
): ConvBnAct {
  const padding = (kernel - 1) >> 1;
  return new ConvBnAct({
    conv: [
      "0",
      kaimingFanOut(
        new Conv2d(cin, cout, { kernel, stride, padding, groups, bias: false }, rng),
        rng,
      ),
    ],
    bn: ["1", new BatchNorm2d(cout)],
    act,
  });
}

/** Squeeze-and-excitation: x scaled by sigmoid(fc2(silu(fc1(mean over H, W of x)))), a gate that
 * MBConv applies to its projection's weights instead (gatedProjection). */
class SqueezeExcite extends Module {
  readonly fc1: Conv2d;
  readonly fc2: Conv2d;
  constructor(channels: number, squeezed: number, rng: Random) {
    super();
    this.fc1 = this.child(
      "fc1",
      kaimingFanOut(new Conv2d(channels, squeezed, { kernel: 1 }, rng), rng),
    );
    this.fc2 = this.child(
      "fc2",
      kaimingFanOut(new Conv2d(squeezed, channels, { kernel: 1 }, rng), rng),
    );
  }
  /** The per-image, per-channel scale [B, C, 1, 1] of x (applied to the projection's weights:
   * gatedProjection). */
  gate(x: Tensor): Tensor {
    const s = adaptiveAvgPool2d(x, 1);
    return this.fc2.forward(this.fc1.forward(s, "silu"), "sigmoid");
  }
}

/** The projection (1×1 conv → BN) of x · gate, with the SE gate [B, C, 1, 1] moved onto the
 * weights: conv(x · g_b) = (W · diag(g_b)) x_b, one [Co, C] product per image, so the full-size
 * x · gate (and the two passes of its gradients, g · gate and Σ g · x) never exist; the gate's
 * and the weight's gradients come from the [B, Co, C] product's, which is tiny. In eval without a
 * tape the BN is folded into W and a bias, as ConvBnAct folds it. */
export function gatedProjection(p: ConvBnAct, x: Tensor, gate: Tensor): Tensor {
  const [n, c] = x.shape;
  const conv = p.conv as Conv2d, bn = p.bn!;
  const co = conv.outChannels;
  const g = reshape(gate, [n, 1, c]);
  if (foldsNow(bn, p.foldInEval)) {
    const f = foldedWeights(conv, bn);
    return matmulMap(mul(reshape(f.weight, [1, co, c]), g), x, { bias: f.bias, biasAxis: "m" });
  }
  const wg = mul(reshape(conv.weight, [1, co, c]), g);
  // A BN in training follows: a conv bias would have a gradient of exactly zero.
  const bias = conv.bias ?? undefined;
  return bn.forward(
    matmulMap(wg, x, { bias, biasAxis: "m", biasCancelled: !!bias && bn.training }),
  );
}

/** Inverted residual block: [expand 1×1] → depthwise k×k → SE → project 1×1 (+ residual). */
class MBConv extends Module {
  readonly #expand: ConvBnAct | null;
  readonly #depthwise: ConvBnAct;
  readonly #se: SqueezeExcite;
  readonly #project: ConvBnAct;
  readonly #residual: boolean;
  readonly #drop: StochasticDepth;
  constructor(
    cin: number,
    cout: number,
    kernel: number,
    stride: number,
    expand: number,
    dropProb: number,
    rng: Random,
  ) {
    super();
    const mid = cin * expand;
    this.#expand = expand !== 1 ? convBnAct(cin, mid, 1, 1, 1, "silu", rng) : null;
    this.#depthwise = convBnAct(mid, mid, kernel, stride, mid, "silu", rng);
    this.#se = new SqueezeExcite(mid, Math.max(1, Math.floor(cin / 4)), rng);
    this.#project = convBnAct(mid, cout, 1, 1, 1, "none", rng);
    const layers: Module[] = [this.#depthwise, this.#se, this.#project];
    if (this.#expand) layers.unshift(this.#expand);
    this.child("block", new ModuleList(layers));
    this.#residual = stride === 1 && cin === cout;
    // torchvision's `stochastic_depth` child; it has no parameters, so no state_dict names.
    this.#drop = this.child("stochastic_depth", new StochasticDepth(dropProb));
  }

  /** Two activations are evicted (Tensor.evict) once their forward uses are over:
   *  - the expansion's BN + SiLU output, the block's largest (6× its input's channels, at the
   *    input's resolution, before a stride 2): the depthwise conv's weight gradient reads it
   *    again, one elementwise pass from the expansion's conv output, which its BN keeps anyway;
   *  - in a residual block, the projection's BN output and its drop-path copy, which no
   *    backward rule reads: never written again.
   * TinyCD's 8 × 512² step: 17.2 → 13.6 GB (bench/peak_breakdown.ts). Evicting the depthwise
   * BN + SiLU outputs and SE products too reaches about 10.9 GB, at 2.7× the recompute traffic. */
  forward(x: Tensor): Tensor {
    const expanded = this.#expand ? this.#expand.forward(x) : x;
    const dw = this.#depthwise.forward(expanded);
    if (expanded !== x) expanded.evict();
    const y = gatedProjection(this.#project, dw, this.#se.gate(dw));
    if (!this.#residual) return y;
    const dropped = this.#drop.forward(y);
    const out = add(dropped, x);
    for (const t of [dropped, y]) t.evict();
    return out;
  }
}

/** Stage list of EfficientNet-b4 up to `features[3]`: [out, layers, kernel, stride, expand]. */
const B4_STAGES: [number, number, number, number, number][] = [
  [24, 2, 3, 1, 1],
  [32, 4, 3, 2, 6],
  [56, 4, 5, 2, 6],
];

export const B4_STEM = 48;
/** torchvision's efficientnet_b4: stochastic_depth_prob 0.2 over 32 MBConv blocks in all. */
const B4_DROP = 0.2, B4_BLOCKS = 32;
export const B4_CHANNELS = [B4_STEM, ...B4_STAGES.map((s) => s[0])];

/** `features[0..3]`: forward(x) returns the output of every stage (1/2, 1/2, 1/4, 1/8). */
export class EfficientNetB4Features extends ModuleList<Module> {
  constructor(rng: Random) {
    const stages: Module[] = [convBnAct(3, B4_STEM, 3, 2, 1, "silu", rng)];
    let cin = B4_STEM, id = 0;
    for (const [cout, n, k, s, e] of B4_STAGES) {
      const blocks: MBConv[] = [];
      for (let i = 0; i < n; i++) {
        const p = (B4_DROP * id++) / B4_BLOCKS;
        blocks.push(new MBConv(i === 0 ? cin : cout, cout, k, i === 0 ? s : 1, e, p, rng));
      }
      stages.push(new MBConvStage(blocks));
      cin = cout;
    }
    super(stages);
  }

  stage(k: number, x: Tensor): Tensor {
    return (this.items[k] as ConvBnAct | MBConvStage).forward(x);
  }
}

class MBConvStage extends ModuleList<MBConv> {
  forward(x: Tensor): Tensor {
    for (const b of this.items) x = b.forward(x);
    return x;
  }
}
