// mmseg's SegformerHead (v1.2.2, mmseg/models/decode_heads/segformer_head.py), the decode head of
// Open-CD's "ChangeFormer": per input level a 1×1 ConvModule (conv without bias, BN, ReLU) to
// `channels`, bilinear resize to level 0's size, concatenation, a 1×1 fusion ConvModule, then
// BaseDecodeHead.cls_seg: Dropout2d and a 1×1 classifier. Names follow the mmseg state_dict
// (convs.{i}.conv/bn, fusion_conv.conv/bn, conv_seg).

import { Conv2d } from "../engine/nn/conv.ts";
import { Dropout2d } from "../engine/nn/dropout.ts";
import { convThenBn, type EvalFolding } from "../engine/nn/fold.ts";
import { Module, ModuleList } from "../engine/nn/module.ts";
import { BatchNorm2d } from "../engine/nn/norm.ts";
import { concat } from "../engine/ops/layout.ts";
import { interpolate } from "../engine/ops/resample.ts";
import type { Random } from "../engine/random.ts";
import { type Tensor, write } from "../engine/tensor.ts";

/** mmcv ConvModule with a 1×1 conv (no bias), BN (eps 1e-5) and ReLU. Its init_weights:
 * kaiming_normal (fan_out, ReLU gain) conv, BN weight 1 and bias 0; `kaiming: false` keeps
 * PyTorch's conv default, for modules mmengine's init does not reach (Changer's `convs`). */
export class ConvModule1x1 extends Module implements EvalFolding {
  foldInEval = true;
  readonly conv: Conv2d;
  readonly bn: BatchNorm2d;
  constructor(cin: number, cout: number, rng: Random, o: { kaiming?: boolean } = {}) {
    super();
    this.conv = this.child("conv", new Conv2d(cin, cout, { kernel: 1, bias: false }, rng));
    if (o.kaiming ?? true) {
      write(this.conv.weight, rng.normal(this.conv.weight.size, Math.sqrt(2 / cout)));
    }
    this.bn = this.child("bn", new BatchNorm2d(cout));
  }
  /** conv → BN → ReLU, with an optional Dropout2d fused after the ReLU (in training; in eval
   * one conv with the BN folded in). */
  forward(x: Tensor, dropout?: Dropout2d): Tensor {
    if (!this.bn.training) return convThenBn(this.conv, this.bn, x, "relu", this.foldInEval);
    return this.bn.forward(this.conv.forward(x), { dropout: dropout?.nextMask() });
  }
}

export class SegformerHead extends Module {
  readonly #convs: ModuleList<ConvModule1x1>;
  readonly #fusion: ConvModule1x1;
  readonly #dropout: Dropout2d;
  readonly #convSeg: Conv2d;

  /** `inChannels` per level; `dropout` is the config's dropout_ratio (0.1 in Open-CD's). */
  constructor(
    inChannels: number[],
    channels: number,
    classes: number,
    rng: Random,
    dropout = 0.1,
  ) {
    super();
    this.#convs = this.child(
      "convs",
      new ModuleList(inChannels.map((c) => new ConvModule1x1(c, channels, rng))),
    );
    this.#fusion = this.child(
      "fusion_conv",
      new ConvModule1x1(channels * inChannels.length, channels, rng),
    );
    this.#dropout = this.child("dropout", new Dropout2d(dropout));
    // BaseDecodeHead's init_cfg: conv_seg normal(0, 0.01), bias 0.
    this.#convSeg = this.child("conv_seg", new Conv2d(channels, classes, { kernel: 1 }, rng));
    write(this.#convSeg.weight, rng.normal(this.#convSeg.weight.size, 0.01));
    write(this.#convSeg.bias!, new Float32Array(classes));
  }

  /** One NCHW tensor per level, level 0 the finest → logits at level 0's size. */
  forward(levels: Tensor[]): Tensor {
    if (levels.length !== this.#convs.items.length) {
      throw new Error(
        `SegformerHead: ${levels.length} levels for ${this.#convs.items.length} convs`,
      );
    }
    const size = [levels[0].shape[2], levels[0].shape[3]] as const;
    const outs = levels.map((x, i) => {
      const y = this.#convs.items[i].forward(x);
      // mmseg's resize to level 0's size; an identity there.
      return i === 0 ? y : interpolate(y, { size, mode: "bilinear", alignCorners: false });
    });
    const joined = concat(outs, 1);
    // The resized levels are read by no backward rule once joined (the concat is kept for the
    // fusion conv's weight gradient): they go (Tensor.evict), never written again.
    for (const t of outs.slice(1)) t.evict();
    return this.#convSeg.forward(this.#fusion.forward(joined, this.#dropout));
  }
}
