// FarSeg (Zheng et al., CVPR 2020) as Open-CD's ChangeStar uses it: the FarSegFPN neck and the
// FarSegHead (classifier an identity), per date:
//
//   neck:     FPN 4 levels → 256 (lateral 1×1 and output 3×3 convs with bias, no norm; top-down
//             nearest), plus the scene embedding s = global average of the 1/32 level [512, 1, 1]
//   relation: per level, r_i = sigmoid(Σ_c scene_i(s) · content_i(p_i)) [1 @ level i], with
//             scene_i = conv1×1 → ReLU → conv1×1 (bias) and content_i a ConvModule 1×1;
//             refined_i = r_i · reencoder_i(p_i), again a ConvModule 1×1
//   decoder:  block i = ConvModule3×3 (+ ×2 bilinear, align_corners True) repeated down to 1/4;
//             output the mean of the four blocks                       → [128 @ 1/4]
//
// Names follow Open-CD's state_dict (neck.lateral_convs.i.conv, neck.fpn_convs.i.conv;
// seg_head._fsr.scene_encoder.i.{0,2}, _fsr.content_encoders.i.0, _fsr.feature_reencoders.i.0,
// _decoder.blocks.i.j.0).

import type { ConvBnAct } from "../engine/nn/conv_bn_act.ts";
import { Conv2d } from "../engine/nn/conv.ts";
import { Module, ModuleList } from "../engine/nn/module.ts";
import { add, mul, mulScalar, sigmoid } from "../engine/ops/elementwise.ts";
import { matmul } from "../engine/ops/matmul.ts";
import { adaptiveAvgPool2d } from "../engine/ops/pool.ts";
import { interpolate } from "../engine/ops/resample.ts";
import { reshape } from "../engine/ops/shape.ts";
import type { Random } from "../engine/random.ts";
import type { Tensor } from "../engine/tensor.ts";
import { convModule } from "./conv_module.ts";

/** mmseg's FPN (no extra convs, nearest top-down) plus FarSegFPN's scene embedding: one date's
 * backbone levels → [p0, p1, p2, p3, scene]. */
export class FarSegFpn extends Module {
  readonly #laterals: ConvBnAct[];
  readonly #fpnConvs: ConvBnAct[];
  constructor(inChannels: number[], out: number, rng: Random) {
    super();
    const plain = { norm: false, relu: false };
    this.#laterals = this.child(
      "lateral_convs",
      new ModuleList(inChannels.map((c) => convModule(c, out, 1, rng, plain))),
    ).items;
    this.#fpnConvs = this.child(
      "fpn_convs",
      new ModuleList(inChannels.map(() => convModule(out, out, 3, rng, { ...plain, padding: 1 }))),
    ).items;
  }
  forward(levels: Tensor[]): Tensor[] {
    const lat = this.#laterals.map((l, i) => l.forward(levels[i]));
    for (let i = lat.length - 1; i > 0; i--) {
      const [h, w] = lat[i - 1].shape.slice(2);
      lat[i - 1] = add(lat[i - 1], interpolate(lat[i], { size: [h, w], mode: "nearest" }));
    }
    const outs = this.#fpnConvs.map((c, i) => c.forward(lat[i]));
    return [...outs, adaptiveAvgPool2d(levels[levels.length - 1], 1)];
  }
}

/** scene_encoder.i: Sequential(Conv2d 1×1, ReLU, Conv2d 1×1), PyTorch's default init. */
class SceneEncoder extends Module {
  readonly #c0: Conv2d;
  readonly #c2: Conv2d;
  constructor(cin: number, cout: number, rng: Random) {
    super();
    this.#c0 = this.child("0", new Conv2d(cin, cout, { kernel: 1 }, rng));
    this.#c2 = this.child("2", new Conv2d(cout, cout, { kernel: 1 }, rng));
  }
  forward(x: Tensor): Tensor {
    return this.#c2.forward(this.#c0.forward(x, "relu"));
  }
}

/** Sequential(ConvModule) wrappers: the ConvModule at "0". */
class Seq0 extends Module {
  readonly m: ConvBnAct;
  constructor(m: ConvBnAct) {
    super();
    this.m = this.child("0", m);
  }
}

/** _FSRelation: foreground-scene relation per level. */
class FSRelation extends Module {
  readonly #scene: SceneEncoder[];
  readonly #content: ConvBnAct[];
  readonly #reencode: ConvBnAct[];
  constructor(sceneChannels: number, inChannels: number[], out: number, rng: Random) {
    super();
    this.#scene = this.child(
      "scene_encoder",
      new ModuleList(inChannels.map(() => new SceneEncoder(sceneChannels, out, rng))),
    ).items;
    const cm = () => new ModuleList(inChannels.map((c) => new Seq0(convModule(c, out, 1, rng))));
    this.#content = this.child("content_encoders", cm()).items.map((s) => s.m);
    this.#reencode = this.child("feature_reencoders", cm()).items.map((s) => s.m);
  }
  forward(scene: Tensor, feats: Tensor[]): Tensor[] {
    return feats.map((p, i) => {
      const [b, , h, w] = p.shape;
      const content = this.#content[i].forward(p);
      const c = content.shape[1];
      const s = reshape(this.#scene[i].forward(scene), [b, 1, c]);
      // Σ_c scene·content per pixel, as a [1, C] × [C, HW] product per sample.
      const r = sigmoid(reshape(matmul(s, reshape(content, [b, c, h * w])), [b, 1, h, w]));
      return mul(r, this.#reencode[i].forward(p));
    });
  }
}

/** One decoder block: Sequential(ConvModule 3×3, UpsamplingBilinear2d(2) or Identity) × n. */
class DecoderBlock extends Module {
  readonly #convs: ConvBnAct[];
  constructor(cin: number, cout: number, readonly ups: number, rng: Random) {
    super();
    this.#convs = Array.from(
      { length: Math.max(ups, 1) },
      (_, j) =>
        this.child(String(j), new Seq0(convModule(j ? cout : cin, cout, 3, rng, { padding: 1 }))).m,
    );
  }
  forward(x: Tensor): Tensor {
    for (const c of this.#convs) {
      x = c.forward(x);
      if (this.ups) x = interpolate(x, { scale: 2, mode: "bilinear", alignCorners: true });
    }
    return x;
  }
}

/** _LightWeightDecoder: levels at strides 4, 8, 16, 32 → the mean of their blocks at 1/4. */
class LightWeightDecoder extends Module {
  readonly #blocks: DecoderBlock[];
  constructor(cin: number, cout: number, rng: Random) {
    super();
    this.#blocks = this.child(
      "blocks",
      new ModuleList([0, 1, 2, 3].map((ups) => new DecoderBlock(cin, cout, ups, rng))),
    ).items;
  }
  forward(levels: Tensor[]): Tensor {
    const outs = levels.map((x, i) => this.#blocks[i].forward(x));
    return mulScalar(outs.reduce((s, o) => add(s, o)), 1 / outs.length);
  }
}

/** FarSegHead without its classifier: [p0…p3, scene] → [channels @ p0's size]. */
export class FarSegHead extends Module {
  readonly #fsr: FSRelation;
  readonly #decoder: LightWeightDecoder;
  constructor(inChannels: number[], fsrChannels: number, channels: number, rng: Random) {
    super();
    const levels = inChannels.slice(0, -1);
    this.#fsr = this.child(
      "_fsr",
      new FSRelation(inChannels[inChannels.length - 1], levels, fsrChannels, rng),
    );
    this.#decoder = this.child("_decoder", new LightWeightDecoder(fsrChannels, channels, rng));
  }
  forward(inputs: Tensor[]): Tensor {
    const refined = this.#fsr.forward(inputs[inputs.length - 1], inputs.slice(0, -1));
    return this.#decoder.forward(refined);
  }
}
