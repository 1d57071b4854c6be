// STANet-Base (Chen & Shi, Remote Sensing 2020) as Open-CD builds it for the JL1-CD paper
// (configs/stanet/stanet_base_512x512_200k_cgwx.py): SiamEncoderDecoder + mmseg ResNetV1c-18
// (4 stages) + concat neck + STAHead with sa_mode 'None', i.e. no self-attention:
//
//   per date:  F = ConvModule3×3(Dropout(0.5)(ConvModule3×3(cat_i up(ConvModule1×1(level_i)))))
//              → 256 channels at 1/4                                       (base_forward)
//   distance:  d = ‖F_A − F_B + 1e-6‖₂ over channels, [B, 1, H/4, W/4]     (PairwiseDistance)
//   logits:    ±100 where d > 1 / ≤ 1, bilinearly resized to the input     (predict_by_feat)
//   loss:      BCL(d resized to the label, margin 2) (engine/ops/bcl_loss.ts)
//
// Output convention: forward returns the ±100 map, exactly upstream's inference output, so
// evaluation (logit > 0), `predict` (sigmoid, i.e. 0 or 1 but for the resize's ramps at the
// borders of changed regions) and `demo` treat STANet as any 1-channel model. That map has no
// gradient, so STANet trains through `loss` (BCL on the distance of the last forward) instead
// of CE on its logits, and as an MTKD teacher hands the student its distance map
// (`distillTarget`), which the student matches by λ·MSE beside its BCL.
// Both dates run separately through backbone and head, as upstream: per-date BatchNorm
// statistics and dropout masks in training. Names follow Open-CD's state_dict.
// Parity: tests/models/stanet_test.ts (../shared/fixtures/formula, README "stanet_base_r18").

import type { ConvBnAct } from "../engine/nn/conv_bn_act.ts";
import { Dropout } from "../engine/nn/dropout.ts";
import { Module, ModuleList } from "../engine/nn/module.ts";
import { bclLoss } from "../engine/ops/bcl_loss.ts";
import { add, map, mulScalar, sqrt, square, sub } from "../engine/ops/elementwise.ts";
import { mean, sum } from "../engine/ops/reduce.ts";
import { interpolate } from "../engine/ops/resample.ts";
import { addScalar } from "../engine/ops/elementwise.ts";
import { Random } from "../engine/random.ts";
import type { Tensor } from "../engine/tensor.ts";
import { convModule } from "./conv_module.ts";
import type { ChangeDetector, Tap } from "./model.ts";
import { ResNet } from "./resnet.ts";

/** STAHead's fpn_bottleneck: ConvModule 3×3, Dropout(0.5), ConvModule 3×3 (children 0, 2). */
class Bottleneck extends Module {
  readonly #conv0: ConvBnAct;
  readonly #drop: Dropout;
  readonly #conv2: ConvBnAct;
  constructor(cin: number, cout: number, rng: Random) {
    super();
    this.#conv0 = this.child("0", convModule(cin, cout, 3, rng, { padding: 1 }));
    this.#drop = this.child("1", new Dropout(0.5));
    this.#conv2 = this.child("2", convModule(cout, cout, 3, rng, { padding: 1 }));
  }
  /** x, or the parts of its channel concatenation, read without joining them. */
  forward(x: Tensor | Tensor[]): Tensor {
    return this.#conv2.forward(this.#drop.forward(this.#conv0.forward(x)));
  }
}

/** Open-CD's STAHead, sa_mode 'None' (no parameters of its own beyond these). */
export class StaHead extends Module {
  readonly #fpnConvs: ConvBnAct[];
  readonly #bottleneck: Bottleneck;
  constructor(inChannels: number[], channels: number, saChannels: number, rng: Random) {
    super();
    this.#fpnConvs = this.child(
      "fpn_convs",
      new ModuleList(inChannels.map((c) => convModule(c, channels, 1, rng))),
    ).items;
    this.#bottleneck = this.child(
      "fpn_bottleneck",
      new Bottleneck(channels * inChannels.length, saChannels, rng),
    );
  }

  /** One date's levels (finest first) → its 1/4-scale features (base_forward). */
  base(levels: Tensor[]): Tensor {
    const [h, w] = levels[0].shape.slice(2);
    const outs = levels.map((x, i) => {
      const y = this.#fpnConvs[i].forward(x);
      return i === 0 ? y : interpolate(y, { size: [h, w], mode: "bilinear" });
    });
    return this.#bottleneck.forward(outs);
  }
}

/** nn.PairwiseDistance(keepdim=True) over channels: ‖a − b + eps‖₂, [B, 1, h, w]. */
export function pairwiseDistance(a: Tensor, b: Tensor, eps = 1e-6): Tensor {
  return sqrt(sum(square(addScalar(sub(a, b), eps)), 1, true));
}

/** STANet-Base: 1-channel ±100 logits at the input size; see the header for its loss. */
export class STANet extends Module implements ChangeDetector {
  readonly backbone: ResNet;
  readonly head: StaHead;
  /** predict_by_feat's distance_threshold. */
  readonly threshold = 1;
  readonly margin = 2;
  /** The last forward's distance map [B, 1, H/4, W/4] (valid in that forward's scope). */
  #dist: Tensor | null = null;

  constructor(seed = 0) {
    super();
    const rng = new Random(seed);
    this.backbone = this.child("backbone", new ResNet({ depth: 18, contractDilation: true }, rng));
    this.head = this.child("decode_head", new StaHead([64, 128, 256, 512], 96, 256, rng));
  }

  forward(a: Tensor, b: Tensor, tap?: Tap): Tensor {
    const [h, w] = [a.shape[2], a.shape[3]];
    if (h % 32 || w % 32) throw new Error(`STANet needs H and W divisible by 32, got ${h}×${w}`);
    const fa = this.head.base(this.backbone.forward(a));
    const fb = this.head.base(this.backbone.forward(b));
    // Upstream then resizes d to level 0's size (align_corners True): the size it already has.
    const dist = pairwiseDistance(fa, fb);
    tap?.("dist", dist);
    this.#dist = dist;
    // No gradient flows through the threshold (upstream writes constants into the map).
    const decided = map("stanet_threshold", `select(-100.0, 100.0, a > ${this.threshold}.0)`, [
      dist,
    ]);
    return interpolate(decided, { size: [h, w], mode: "bilinear" });
  }

  /** The distance map of the last forward, resized to [h, w] as BaseDecodeHead.loss_by_feat
   * resizes it to the label (bilinear, align_corners False). */
  #distanceAt(h: number, w: number): Tensor {
    if (!this.#dist) throw new Error("STANet: loss or distillTarget before any forward");
    const d = this.#dist;
    return d.shape[2] === h && d.shape[3] === w
      ? d
      : interpolate(d, { size: [h, w], mode: "bilinear" });
  }

  loss(labels: Tensor, distill?: { lambda: number; teacher: Tensor }): Tensor {
    const d = this.#distanceAt(labels.shape[1], labels.shape[2]);
    const bcl = bclLoss(d, labels, { margin: this.margin });
    if (!distill || distill.lambda === 0) return bcl;
    return add(bcl, mulScalar(mean(square(sub(d, distill.teacher))), distill.lambda));
  }

  distillTarget(a: Tensor, b: Tensor): Tensor {
    this.forward(a, b);
    return this.#distanceAt(a.shape[2], a.shape[3]);
  }
}

export function createStanet(seed = 0): STANet {
  return new STANet(seed);
}
