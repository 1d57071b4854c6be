// mmseg's UPerHead (v1.2.2, decode_heads/uper_head.py) with its PPM, as ChangeStar's segmentation
// head (its classifier replaced by an identity, so it ends at fpn_bottleneck):
//
//   PPM on the coarsest level x: for each scale s, ConvModule1×1(AdaptiveAvgPool(s)(x)) resized
//   back (bilinear); bottleneck = ConvModule3×3(cat(x, pooled…))      → lateral of the last level
//   laterals = ConvModule1×1(level_i) for the other levels; top-down: lateral_{i−1} += up(lateral_i)
//   fpn_outs = ConvModule3×3(lateral_i) (the last passes as is), all resized to level 0, concat,
//   fpn_bottleneck = ConvModule3×3                                      → [channels @ level 0]
//
// Every resize is bilinear, align_corners False. Names follow mmseg's state_dict
// (psp_modules.j.1, bottleneck, lateral_convs.i, fpn_convs.i, fpn_bottleneck).

import type { ConvBnAct } from "../engine/nn/conv_bn_act.ts";
import { Module, ModuleList } from "../engine/nn/module.ts";
import { add } from "../engine/ops/elementwise.ts";
import { adaptiveAvgPool2d } from "../engine/ops/pool.ts";
import { interpolate } from "../engine/ops/resample.ts";
import type { Random } from "../engine/random.ts";
import type { Tensor } from "../engine/tensor.ts";
import { convModule } from "./conv_module.ts";

const resizeTo = (x: Tensor, like: Tensor): Tensor =>
  x.shape[2] === like.shape[2] && x.shape[3] === like.shape[3]
    ? x
    : interpolate(x, { size: [like.shape[2], like.shape[3]], mode: "bilinear" });

/** One PPM branch: Sequential(AdaptiveAvgPool2d(scale), ConvModule 1×1), the conv at "1". */
class PoolBranch extends Module {
  readonly #conv: ConvBnAct;
  constructor(readonly scale: number, cin: number, cout: number, rng: Random) {
    super();
    this.#conv = this.child("1", convModule(cin, cout, 1, rng));
  }
  forward(x: Tensor): Tensor {
    return resizeTo(this.#conv.forward(adaptiveAvgPool2d(x, this.scale)), x);
  }
}

export class UPerHead extends Module {
  readonly #psp: PoolBranch[];
  readonly #bottleneck: ConvBnAct;
  readonly #laterals: ConvBnAct[];
  readonly #fpnConvs: ConvBnAct[];
  readonly #fpnBottleneck: ConvBnAct;

  constructor(inChannels: number[], channels: number, poolScales: number[], rng: Random) {
    super();
    const last = inChannels[inChannels.length - 1];
    this.#psp = this.child(
      "psp_modules",
      new ModuleList(poolScales.map((s) => new PoolBranch(s, last, channels, rng))),
    ).items;
    this.#bottleneck = this.child(
      "bottleneck",
      convModule(last + poolScales.length * channels, channels, 3, rng, { padding: 1 }),
    );
    const inner = inChannels.slice(0, -1);
    this.#laterals = this.child(
      "lateral_convs",
      new ModuleList(inner.map((c) => convModule(c, channels, 1, rng))),
    ).items;
    this.#fpnConvs = this.child(
      "fpn_convs",
      new ModuleList(inner.map(() => convModule(channels, channels, 3, rng, { padding: 1 }))),
    ).items;
    this.#fpnBottleneck = this.child(
      "fpn_bottleneck",
      convModule(inChannels.length * channels, channels, 3, rng, { padding: 1 }),
    );
  }

  /** Levels finest first → [channels, level 0's size]. */
  forward(levels: Tensor[]): Tensor {
    const x = levels[levels.length - 1];
    // Each concatenation is read by its conv as parts, never joined (engine/ops/conv2d_concat.ts).
    const psp = this.#bottleneck.forward([x, ...this.#psp.map((p) => p.forward(x))]);
    const laterals = [...this.#laterals.map((l, i) => l.forward(levels[i])), psp];
    for (let i = laterals.length - 1; i > 0; i--) {
      laterals[i - 1] = add(laterals[i - 1], resizeTo(laterals[i], laterals[i - 1]));
    }
    // The last lateral (the PPM output, which no top-down sum changes) passes as is.
    const outs = [...this.#fpnConvs.map((c, i) => c.forward(laterals[i])), psp];
    return this.#fpnBottleneck.forward(outs.map((o) => resizeTo(o, outs[0])));
  }
}
