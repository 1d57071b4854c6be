// CGNet, the change guiding network (Han et al., JSTARS 2023), as Open-CD builds it
// (opencd/models/backbones/cgnet.py, DIEncoderDecoder with two IdentityHeads):
//
//   VGG-16-BN features on A and on B (one module, run once per date), in five blocks that end
//   at a BatchNorm: inc (1/1, 64), down1 (1/2, 128), down2 (1/4, 256), down3 (1/8, 512),
//   down4 (1/16, 512); each next block starts with the ReLU and the max-pool;
//   L_k = conv_reduce_k(cat(B_k, A_k)) for k = 1…4 (B's features first);
//   change prior cm = decoder(L4 resized to 1/2), 1 channel;
//   f4 = decoder_module4(cat(up(cgm_4(L4, cm)), L3)), f3 = …(cgm_3(f4, cm), L2),
//   f2 = …(cgm_2(f3, cm), L1); final = decoder_final(f2).
//
// Every resize is bilinear with align_corners True. final and cm, both resized to the input,
// are the change logit and the auxiliary output; the configured loss is BCE of each, weight 1.
// ChangeGuideModule: self-attention over all positions whose query, key and value are scaled
// by 1 + sigmoid(cm), softmax without the 1/√d scaling, then γ·out + x.

import { isGradEnabled } from "../engine/autograd.ts";
import { Conv2d } from "../engine/nn/conv.ts";
import { ConvBnAct } from "../engine/nn/conv_bn_act.ts";
import { type Layer, Module, ModuleList } from "../engine/nn/module.ts";
import { BatchNorm2d } from "../engine/nn/norm.ts";
import { attention } from "../engine/ops/attention.ts";
import { cdLoss } from "../engine/ops/cd_loss.ts";
import { add, addScalar, mul, sigmoid } from "../engine/ops/elementwise.ts";
import { permute } from "../engine/ops/layout.ts";
import { maxPool2d } from "../engine/ops/pool.ts";
import { interpolate } from "../engine/ops/resample.ts";
import { reshape } from "../engine/ops/shape.ts";
import { Random } from "../engine/random.ts";
import { parameter, type Tensor } from "../engine/tensor.ts";
import { kaimingFanOut } from "./init.ts";
import type { ChangeDetector, Tap } from "./model.ts";

/** Open-CD's BasicConv2d: conv (no bias) `conv` → BN `bn` → ReLU; the BN folds in eval. */
function basicConv2d(cin: number, cout: number, kernel: number, rng: Random): ConvBnAct {
  const conv = new Conv2d(cin, cout, { kernel, padding: kernel >> 1, bias: false }, rng);
  return new ConvBnAct({ conv: ["conv", conv], bn: ["bn", new BatchNorm2d(cout)], act: "relu" });
}

/** A slice of torchvision's VGG-16-BN `features` that keeps the original indices as names:
 * [ReLU, max-pool] unless it is the first, then conv3×3 (with bias) → BN (→ ReLU) units; the
 * last unit ends at its BN. Upstream's opening ReLU is in place, so it also changes the previous
 * block's output: every block but the last ends with that ReLU here (`reluAfter`), fused into its
 * last BN, and the next block opens at its pool. */
class VggBnBlock extends Module implements Layer {
  readonly #units: ConvBnAct[] = [];
  readonly #pool: boolean;
  constructor(
    first: number,
    cin: number,
    cout: number,
    convs: number,
    rng: Random,
    reluAfter: boolean,
  ) {
    super();
    this.#pool = first > 0;
    let index = first + (this.#pool ? 2 : 0);
    for (let u = 0; u < convs; u++) {
      // torchvision's VGG init: kaiming_normal_(fan_out, relu), bias 0; BN weight 1, bias 0.
      const conv = kaimingFanOut(
        new Conv2d(u === 0 ? cin : cout, cout, { kernel: 3, padding: 1 }, rng),
        rng,
      );
      const last = u === convs - 1;
      this.#units.push(this.inline(
        new ConvBnAct({
          conv: [String(index), conv],
          bn: [String(index + 1), new BatchNorm2d(cout)],
          act: last && !reluAfter ? "none" : "relu",
        }),
      ));
      index += 3;
    }
  }
  forward(x: Tensor): Tensor {
    // The ReLU that opens the block ended the block before (reluAfter).
    if (this.#pool) x = maxPool2d(x, { kernel: 2, stride: 2 });
    for (const u of this.#units) x = u.forward(x);
    return x;
  }
}

/** Resize bilinear with align_corners True (CGNet's every resize). */
function resizeAligned(x: Tensor, size: readonly [number, number]): Tensor {
  return interpolate(x, { size, mode: "bilinear", alignCorners: true });
}

/** ChangeGuideModule: x + γ·attention(q(x)·s, k(x)·s, v(x)·s), s = 1 + sigmoid(cm resized). */
export class ChangeGuideModule extends Module {
  readonly #query: Conv2d;
  readonly #key: Conv2d;
  readonly #value: Conv2d;
  readonly gamma: Tensor;
  constructor(readonly channels: number, rng: Random) {
    super();
    const k1 = { kernel: 1 };
    this.#query = this.child("query_conv", new Conv2d(channels, channels / 8, k1, rng));
    this.#key = this.child("key_conv", new Conv2d(channels, channels / 8, k1, rng));
    this.#value = this.child("value_conv", new Conv2d(channels, channels, k1, rng));
    this.gamma = this.param("gamma", parameter(new Float32Array(1), [1], "gamma"));
  }

  forward(x: Tensor, cm: Tensor): Tensor {
    const [b, c, h, w] = x.shape;
    const n = h * w;
    const scale = addScalar(sigmoid(resizeAligned(cm, [h, w])), 1);
    // One head of N tokens: C/8-wide queries and keys, C-wide values (the GEMM form of
    // attention takes any width).
    const tokens = (t: Tensor, d: number) =>
      reshape(permute(reshape(t, [b, d, n]), [0, 2, 1]), [b, 1, n, d]);
    const q = tokens(mul(this.#query.forward(x), scale), c / 8);
    const k = tokens(mul(this.#key.forward(x), scale), c / 8);
    const v = tokens(mul(this.#value.forward(x), scale), c);
    // softmax(QᵀK) without scaling; out[c, i] = Σ_j V[c, j]·A[i, j].
    const out = permute(attention(q, k, v, { scale: 1 }), [0, 1, 3, 2]);
    return add(mul(reshape(out, [b, c, h, w]), this.gamma), x);
  }
}

/** Open-CD's `CGNet` backbone: (A, B) → [change prior, final], 1 channel each at input size. */
export class CgnetBackbone extends Module {
  readonly #blocks: VggBnBlock[];
  readonly #reduce: ConvBnAct[];
  readonly #decoder: [ConvBnAct, Conv2d];
  readonly #final: [ConvBnAct, Conv2d];
  readonly #cgm: ChangeGuideModule[];
  readonly #modules: ConvBnAct[];

  constructor(rng: Random) {
    super();
    // features[0:5], [5:12], [12:22], [22:32], [32:42].
    this.#blocks = [
      this.child("inc", new VggBnBlock(0, 3, 64, 2, rng, true)),
      this.child("down1", new VggBnBlock(5, 64, 128, 2, rng, true)),
      this.child("down2", new VggBnBlock(12, 128, 256, 3, rng, true)),
      this.child("down3", new VggBnBlock(22, 256, 512, 3, rng, true)),
      this.child("down4", new VggBnBlock(32, 512, 512, 3, rng, false)),
    ];
    this.#reduce = [128, 256, 512, 512].map((c, i) =>
      this.child(`conv_reduce_${i + 1}`, basicConv2d(2 * c, c, 3, rng))
    );
    // Built but never called upstream: in the state_dict, never trained.
    for (const [k, c] of [[4, 512], [3, 512], [2, 256]]) {
      this.child(`up_layer${k}`, basicConv2d(c, c, 3, rng));
    }
    this.#decoder = [
      basicConv2d(512, 64, 3, rng),
      new Conv2d(64, 1, { kernel: 3, padding: 1 }, rng),
    ];
    this.#final = [basicConv2d(128, 64, 3, rng), new Conv2d(64, 1, { kernel: 1 }, rng)];
    this.child("decoder", new ModuleList<Module>([...this.#decoder]));
    this.child("decoder_final", new ModuleList<Module>([...this.#final]));
    this.#cgm = [256, 512, 512].map((c, i) =>
      this.child(`cgm_${i + 2}`, new ChangeGuideModule(c, rng))
    );
    this.#modules = [[4, 1024, 512], [3, 768, 256], [2, 384, 128]].map(([k, cin, cout]) =>
      this.child(`decoder_module${k}`, basicConv2d(cin, cout, 3, rng))
    );
  }

  /** [change prior, final] at the input's size (both before any sigmoid). */
  forward(a: Tensor, b: Tensor): [Tensor, Tensor] {
    const size = [a.shape[2], a.shape[3]] as const;
    // torchvision's ReLUs are in place: the ReLU opening down2 (down3, down4) overwrites down1's
    // (down2's, down3's) output, so upstream's layer1…layer3 are after that ReLU (which ends
    // those blocks here) and only layer4, which no block follows, is the bare BN output.
    const encode = (x: Tensor) => {
      x = this.#blocks[0].forward(x);
      return this.#blocks.slice(1).map((block) => x = block.forward(x)); // 1/2 … 1/16
    };
    const fa = encode(a), fb = encode(b);
    // Each concatenation is read by its conv as parts, never joined (engine/ops/conv2d_concat.ts).
    const l = this.#reduce.map((r, i) => r.forward([fb[i], fa[i]]));
    const at = (t: Tensor) => [t.shape[2], t.shape[3]] as const;
    const up2 = (t: Tensor) => resizeAligned(t, [2 * t.shape[2], 2 * t.shape[3]]);
    const cm = this.#decoder[1].forward(this.#decoder[0].forward(resizeAligned(l[3], at(l[0]))));
    let x = l[3];
    // cgm_4 → decoder_module4 with L3, cgm_3 → …3 with L2, cgm_2 → …2 with L1.
    for (let i = 0; i < 3; i++) {
      x = this.#modules[i].forward([up2(this.#cgm[2 - i].forward(x, cm)), l[2 - i]]);
    }
    const final = this.#final[1].forward(this.#final[0].forward(x));
    return [resizeAligned(cm, size), resizeAligned(final, size)];
  }
}

/** CGNet change detector: the 1-channel change logit, with the change prior as auxiliary output. */
export class Cgnet extends Module implements ChangeDetector {
  readonly backbone: CgnetBackbone;
  /** The change prior of the last forward that kept it (training or with gradients). */
  #prior: Tensor | null = null;

  constructor(seed = 0) {
    super();
    this.backbone = this.child("backbone", new CgnetBackbone(new Random(seed)));
  }

  forward(a: Tensor, b: Tensor, tap?: Tap): Tensor {
    const [prior, final] = this.backbone.forward(a, b);
    this.#prior = this.training || isGradEnabled() ? prior : null;
    tap?.("aux0", prior);
    return final;
  }

  /** The auxiliary IdentityHead's loss: BCE of the change prior, weight 1. */
  auxLoss(labels: Tensor): Tensor {
    if (!this.#prior) throw new Error("CGNet auxLoss: no change prior kept");
    return cdLoss(this.#prior, labels).loss;
  }
}
