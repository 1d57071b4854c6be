// TinyCD (Codegoni, Lombardi, Ferrari, 2023): a shared EfficientNet-b4 trunk (stages 0–3), mixing
// blocks that interleave the two dates' channels and mix each pair with a grouped 3×3 conv, mask
// attention (1×1 "pixelwise linear" chains ending in one channel) and an UpMask decoder that
// upsamples, multiplies by the next finer mask and refines. Names follow the authors' code.
// The model returns logits: the authors' final sigmoid is left to the loss and the predictor.

import { Conv2d } from "../engine/nn/conv.ts";
import { ConvBnAct } from "../engine/nn/conv_bn_act.ts";
import { Flat, Module, ModuleList } from "../engine/nn/module.ts";
import { InstanceNorm2d } from "../engine/nn/norm.ts";
import { PReLU } from "../engine/nn/activation.ts";
import { mul } from "../engine/ops/elementwise.ts";
import { interleaveChannels } from "../engine/ops/layout.ts";
import { interpolate } from "../engine/ops/resample.ts";
import { Random } from "../engine/random.ts";
import type { Tensor } from "../engine/tensor.ts";
import { EfficientNetB4Features } from "./efficientnet.ts";
import type { ChangeDetector } from "./model.ts";

/** 1×1 convs fin[i] → fout[i], each followed by PReLU (the last one too unless `logitsOut`):
 * `_linears.i.0` (conv) and `.1` (PReLU). */
class PixelwiseLinear extends Module {
  readonly #layers: ConvBnAct[];
  constructor(fin: number[], fout: number[], logitsOut: boolean, rng: Random) {
    super();
    this.#layers = fin.map((cin, i) => {
      const conv = new Conv2d(cin, fout[i], { kernel: 1 }, rng);
      const last = logitsOut && i === fin.length - 1;
      return new ConvBnAct({ conv: ["0", conv], act: last ? "none" : ["1", new PReLU()] });
    });
    this.child("_linears", new ModuleList(this.#layers));
  }
  forward(x: Tensor): Tensor {
    for (const l of this.#layers) x = l.forward(x);
    return x;
  }
}

/** conv → PReLU → InstanceNorm, named n, n + 1, n + 2 (the PReLU fused into the conv). */
function convPreluNorm(conv: Conv2d, n: number): ConvBnAct {
  return new ConvBnAct({
    conv: [String(n), conv],
    act: [String(n + 1), new PReLU()],
    normAfter: [String(n + 2), new InstanceNorm2d(conv.outChannels)],
  });
}

/** Interleave A's and B's channels (a0, b0, a1, b1, …) and mix each pair: grouped 3×3 conv
 * (groups = output channels) → PReLU → InstanceNorm. */
class MixingBlock extends Module {
  readonly #convmix: ConvBnAct;
  constructor(cin: number, cout: number, rng: Random) {
    super();
    const conv = new Conv2d(cin, cout, { kernel: 3, padding: 1, groups: cout }, rng);
    this.#convmix = this.child("_convmix", convPreluNorm(conv, 0));
  }
  forward(x: Tensor, y: Tensor): Tensor {
    return this.#convmix.forward(interleaveChannels(x, y));
  }
}

/** Mixing block followed by a pixelwise-linear chain down to a one-channel mask. */
class MixingMaskAttention extends Module {
  readonly #mixing: MixingBlock;
  readonly #linear: PixelwiseLinear;
  constructor(cin: number, cout: number, fin: number[], fout: number[], rng: Random) {
    super();
    this.#mixing = this.child("_mixing", new MixingBlock(cin, cout, rng));
    this.#linear = this.child("_linear", new PixelwiseLinear(fin, fout, false, rng));
  }
  forward(x: Tensor, y: Tensor): Tensor {
    return this.#linear.forward(this.#mixing.forward(x, y));
  }
}

/** ×2 bilinear (align_corners) upsampling, times the finer mask, then depthwise 3×3 + PReLU +
 * InstanceNorm and 1×1 + PReLU + InstanceNorm (`_convolution.0`–`.5`). */
class UpMask extends Module {
  readonly #dw: ConvBnAct;
  readonly #pw: ConvBnAct;
  constructor(nin: number, nout: number, rng: Random) {
    super();
    this.#dw = convPreluNorm(new Conv2d(nin, nin, { kernel: 3, padding: 1, groups: nin }, rng), 0);
    this.#pw = convPreluNorm(new Conv2d(nin, nout, { kernel: 1 }, rng), 3);
    this.child("_convolution", new Flat([this.#dw, this.#pw]));
  }
  forward(x: Tensor, mask: Tensor): Tensor {
    x = interpolate(x, { scale: 2, mode: "bilinear", alignCorners: true });
    x = mul(x, mask);
    return this.#pw.forward(this.#dw.forward(x));
  }
}

export class TinyCD extends Module implements ChangeDetector {
  readonly #backbone: EfficientNetB4Features;
  readonly #firstMix: MixingMaskAttention;
  readonly #masks: [MixingMaskAttention, MixingMaskAttention, MixingBlock];
  readonly #up: UpMask[];
  readonly #classify: PixelwiseLinear;

  constructor(seed = 0) {
    super();
    const rng = new Random(seed);
    this.#backbone = this.child("_backbone", new EfficientNetB4Features(rng));
    this.#firstMix = this.child(
      "_first_mix",
      new MixingMaskAttention(6, 3, [3, 10, 5], [10, 5, 1], rng),
    );
    this.#masks = [
      new MixingMaskAttention(48, 24, [24, 12, 6], [12, 6, 1], rng),
      new MixingMaskAttention(64, 32, [32, 16, 8], [16, 8, 1], rng),
      new MixingBlock(112, 56, rng),
    ];
    this.child("_mixing_mask", new ModuleList<Module>(this.#masks));
    this.#up = [new UpMask(56, 64, rng), new UpMask(64, 64, rng), new UpMask(64, 32, rng)];
    this.child("_up", new ModuleList(this.#up));
    this.#classify = this.child(
      "_classify",
      new PixelwiseLinear([32, 16, 8], [16, 8, 1], true, rng),
    );
  }

  forward(a: Tensor, b: Tensor): Tensor {
    const features = [this.#firstMix.forward(a, b)];
    for (let k = 0; k < 4; k++) {
      a = this.#backbone.stage(k, a);
      b = this.#backbone.stage(k, b);
      if (k > 0) features.push(this.#masks[k - 1].forward(a, b));
    }
    let x = features[3];
    for (let i = 0; i < 3; i++) {
      const up = this.#up[i].forward(x, features[2 - i]);
      // Read by no backward rule (the upsampling's gradient needs no input, the InstanceNorm
      // that made it keeps its own input): evicted, it is never written again.
      x.evict();
      x = up;
    }
    return this.#classify.forward(x);
  }
}
