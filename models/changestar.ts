// ChangeStar (Zheng et al., ICCV 2021) as Open-CD builds it for the JL1-CD paper, "1x96":
// SiamEncoderDecoder + ResNetV1c-18 + ChangeStarHead around a segmentation head (FarSeg or
// UPerNet, its classifier an identity):
//
//   per date:    x_A = seg_head(A's features), x_B = seg_head(B's features)    [128 @ 1/4]
//   ChangeMixin: c12 = ReLU(BN(conv3×3(cat(x_A, x_B)))), c21 the same on cat(x_B, x_A)   [96]
//   classifier:  conv_seg 1×1 (after BaseDecodeHead's Dropout2d(0.1)) → 1 logit each
//
// forward returns t1t2 (c12's logit) resized to the input (bilinear), upstream's inference mode;
// in training (or any grad-enabled forward) it also keeps t2t1 for auxLoss, which adds the
// configured loss's other terms: BCE of t2t1, and for FarSeg mmseg's Dice (sigmoid, eps 1e-3) of
// both. The trainer's BCE of the logits is the t1t2 CE term. Dates and directions run
// separately, as upstream, so BatchNorm's training statistics never mix them.
// Parity: tests/models/changestar_test.ts (../shared/fixtures/formula, README
// "changestar_upernet_r18", "changestar_farseg_r18").

import { isGradEnabled } from "../engine/autograd.ts";
import { ConvBnAct } from "../engine/nn/conv_bn_act.ts";
import { Conv2d } from "../engine/nn/conv.ts";
import { Module, ModuleList } from "../engine/nn/module.ts";
import { BatchNorm2d } from "../engine/nn/norm.ts";
import { cdLoss } from "../engine/ops/cd_loss.ts";
import { diceLoss } from "../engine/ops/dice_loss.ts";
import { add } from "../engine/ops/elementwise.ts";
import { interpolate } from "../engine/ops/resample.ts";
import { Random } from "../engine/random.ts";
import { type Tensor, write } from "../engine/tensor.ts";
import type { ChangeDetector, Tap } from "./model.ts";
import { FarSegFpn, FarSegHead } from "./farseg.ts";
import { ResNet } from "./resnet.ts";
import { UPerHead } from "./uper_head.ts";

/** A segmentation head of one date: backbone levels (finest first) → [128 @ 1/4]. */
export interface SegHead extends Module {
  forward(levels: Tensor[]): Tensor;
}

/** ChangeMixin's convs (num_convs 1): Sequential(Conv2d with bias, BatchNorm2d, ReLU) at
 * convs.0, PyTorch's default init; cls_seg's Dropout2d(0.1) follows the ReLU, fused into the
 * BN's pass. */
class ChangeMixin extends Module {
  readonly conv: ConvBnAct;
  constructor(cin: number, cout: number, rng: Random) {
    super();
    const conv = new ConvBnAct({
      conv: ["0", new Conv2d(cin, cout, { kernel: 3, padding: 1 }, rng)],
      bn: ["1", new BatchNorm2d(cout)],
      act: "relu",
      dropout: 0.1,
    });
    this.conv = this.child("convs", new ModuleList([conv])).items[0];
  }
}

/** Open-CD's ChangeStarHead with one ChangeMixin conv (num_convs 1). */
export class ChangeStarHead extends Module {
  readonly #mixin: ConvBnAct;
  readonly #convSeg: Conv2d;
  constructor(readonly segHead: SegHead, segChannels: number, inner: number, rng: Random) {
    super();
    this.child("seg_head", segHead);
    this.#mixin = this.child("changemixin", new ChangeMixin(2 * segChannels, inner, rng)).conv;
    // BaseDecodeHead's init_cfg: conv_seg normal(0, 0.01), bias 0.
    this.#convSeg = this.child("conv_seg", new Conv2d(inner, 1, { kernel: 1 }, rng));
    write(this.#convSeg.weight, rng.normal(this.#convSeg.weight.size, 0.01));
    write(this.#convSeg.bias!, new Float32Array(1));
  }

  /** The two dates' seg-head outputs → [t1t2, t2t1] logits at 1/4, or t1t2 alone. */
  forward(xa: Tensor, xb: Tensor, both: boolean): Tensor[] {
    // The two dates' channels reach the mixin's conv as parts, never joined.
    const dir = (p: Tensor, q: Tensor) => this.#convSeg.forward(this.#mixin.forward([p, q]));
    return both ? [dir(xa, xb), dir(xb, xa)] : [dir(xa, xb)];
  }
}

export type ChangeStarVariant = "upernet" | "farseg";

/** ChangeStar 1x96 on ResNetV1c-18: 1-channel logits (t1t2) at the input size. */
export class ChangeStar extends Module implements ChangeDetector {
  readonly backbone: ResNet;
  readonly head: ChangeStarHead;
  /** FarSeg's FPN neck (UPerNet has the plain concat neck, no weights). */
  readonly neck: FarSegFpn | null = null;
  /** The last grad-enabled forward's logits at the input size, for auxLoss. */
  #outs: { t1t2: Tensor; t2t1: Tensor } | null = null;

  constructor(seed = 0, readonly variant: ChangeStarVariant = "upernet") {
    super();
    const rng = new Random(seed);
    this.backbone = this.child("backbone", new ResNet({ depth: 18, contractDilation: true }, rng));
    const levels = [64, 128, 256, 512];
    if (variant === "farseg") {
      this.neck = this.child("neck", new FarSegFpn(levels, 256, rng));
    }
    const seg = variant === "farseg"
      ? new FarSegHead([256, 256, 256, 256, 512], 256, 128, rng)
      : new UPerHead(levels, 128, [1, 2, 3, 6], rng);
    this.head = this.child("decode_head", new ChangeStarHead(seg, 128, 96, rng));
  }

  #date(x: Tensor): Tensor {
    const levels = this.backbone.forward(x);
    return this.head.segHead.forward(this.neck ? this.neck.forward(levels) : levels);
  }

  forward(a: Tensor, b: Tensor, _tap?: Tap): Tensor {
    const [h, w] = [a.shape[2], a.shape[3]];
    if (h % 32 || w % 32) {
      throw new Error(`ChangeStar needs H and W divisible by 32, got ${h}×${w}`);
    }
    const both = this.training || isGradEnabled();
    const up = (x: Tensor) => interpolate(x, { size: [h, w], mode: "bilinear" });
    const [t12, t21] = this.head.forward(this.#date(a), this.#date(b), both).map(up);
    this.#outs = both ? { t1t2: t12, t2t1: t21 } : null;
    return t12;
  }

  /** BCE of t2t1 (the trainer's BCE of the returned logits is the t1t2 term), and for FarSeg
   * the Dice loss of both directions. */
  auxLoss(labels: Tensor): Tensor {
    const o = this.#outs;
    if (!o) throw new Error("ChangeStar: auxLoss needs a training or grad-enabled forward");
    const ce = cdLoss(o.t2t1, labels).loss;
    if (this.variant !== "farseg") return ce;
    return add(ce, add(diceLoss(o.t1t2, labels), diceLoss(o.t2t1, labels)));
  }
}

export function createChangeStar(seed = 0, variant: ChangeStarVariant = "upernet"): ChangeStar {
  return new ChangeStar(seed, variant);
}
