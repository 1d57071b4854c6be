// IFN, the deeply supervised image fusion network (Zhang et al. 2020), as Open-CD builds it
// (opencd/models/backbones/ifn.py, DIEncoderDecoder with an IdentityHead and a DSIdentityHead):
//
//   VGG-16 features[0:30] (frozen, run without gradient) on A and on B, tapped after the ReLUs
//   at 1/1, 1/2, 1/4, 1/8 and 1/16 (64, 128, 256, 512, 512 channels);
//   level 1/16: cat(A, B) → 2 conv blocks → spatial attention → BN → out1 (1×1 → 1);
//   levels 1/8 … 1/1: ×2 transposed conv, cat with A's and B's taps, channel attention,
//   3 conv blocks, spatial attention, BN → out2 … out5.
//
// out5 at full size is the change logit (1 channel); out1…out4 are the deep supervision that
// the configured loss adds: BCE of each, resized to the label (bilinear), weight 1. The encoder
// is one module under two names (`encoder1 = encoder2` upstream), so its tensors appear in the
// state_dict under both. Names follow Open-CD's state_dict (backbone.o1_conv1.0.weight, …).

import { isGradEnabled, noGrad } from "../engine/autograd.ts";
import { PReLU } from "../engine/nn/activation.ts";
import { Conv2d, ConvTranspose2d } from "../engine/nn/conv.ts";
import { ConvBnAct } from "../engine/nn/conv_bn_act.ts";
import { type Layer, Module, ModuleList } from "../engine/nn/module.ts";
import { BatchNorm2d } from "../engine/nn/norm.ts";
import { cdLoss } from "../engine/ops/cd_loss.ts";
import { channelMeanMax } from "../engine/ops/channel_pool.ts";
import { add, mul, sigmoid } from "../engine/ops/elementwise.ts";
import { concat } from "../engine/ops/layout.ts";
import { adaptiveAvgPool2d, adaptiveMaxPool2d, maxPool2d } from "../engine/ops/pool.ts";
import { interpolate } from "../engine/ops/resample.ts";
import { Random } from "../engine/random.ts";
import type { Tensor } from "../engine/tensor.ts";
import { kaimingFanOut } from "./init.ts";
import type { ChangeDetector, Tap } from "./model.ts";

/** torchvision VGG-16 `features` up to index 29 (conv3×3 + ReLU, "M" = 2×2 max-pool). */
const VGG16: (number | "M")[] = [
  64,
  64,
  "M",
  128,
  128,
  "M",
  256,
  256,
  256,
  "M",
  512,
  512,
  512,
  "M",
  512,
  512,
  512,
];

/** A layer fused into its neighbour (VGG's ReLU into the conv before it, IFN's ZeroPad2d into the
 * conv after it): it holds its place, hence the indices of the names after it. */
class Fused extends Module {}

/** A max-pool as a layer without parameters (keeps VGG's indices in the ModuleList). */
class MaxPool2x2 extends Module implements Layer {
  forward(x: Tensor): Tensor {
    return maxPool2d(x, { kernel: 2, stride: 2 });
  }
}

/** VGG16FeaturePicker: the ReLU outputs at indices 3, 8, 15, 22 and 29 of `features`. Each conv
 * has its ReLU fused; the ReLUs hold no parameters, so only the convs and pools are listed. */
class Vgg16Features extends Module {
  readonly #layers: (Conv2d | MaxPool2x2)[] = [];
  constructor(rng: Random) {
    super();
    const items: Module[] = [];
    let cin = 3;
    for (const v of VGG16) {
      if (v === "M") {
        items.push(new MaxPool2x2());
        continue;
      }
      // torchvision's VGG init: kaiming_normal_(fan_out, relu), bias 0.
      items.push(kaimingFanOut(new Conv2d(cin, v, { kernel: 3, padding: 1 }, rng), rng));
      items.push(new Fused()); // the ReLU at the next index, fused into the conv
      cin = v;
    }
    this.#layers = items.filter((m) => !(m instanceof Fused)) as (Conv2d | MaxPool2x2)[];
    this.child("features", new ModuleList(items));
  }

  /** [1/1 64, 1/2 128, 1/4 256, 1/8 512, 1/16 512]: the output before each pool, and the last.
   * Runs without gradient, so an activation that is not picked is freed once consumed. */
  forward(input: Tensor): Tensor[] {
    const picked: Tensor[] = [];
    let x = input;
    for (const l of this.#layers) {
      if (l instanceof MaxPool2x2) picked.push(x);
      const y = l instanceof Conv2d ? l.forward(x, "relu") : l.forward(x);
      if (x !== input && !picked.includes(x)) x.dispose();
      x = y;
    }
    picked.push(x);
    return picked;
  }
}

/** conv3×3 (bias) → PReLU (one slope) → BN, children "0", "1", "2"; no dropout (IFN's
 * use_dropout is False). The PReLU is fused into the conv's write-out. */
class ConvPreluBn extends Module implements Layer {
  readonly #convAct: ConvBnAct;
  readonly #bn: BatchNorm2d;
  constructor(cin: number, cout: number, rng: Random) {
    super();
    const conv = new Conv2d(cin, cout, { kernel: 3, padding: 1 }, rng);
    this.#convAct = this.inline(new ConvBnAct({ conv: ["0", conv], act: ["1", new PReLU()] }));
    this.#bn = this.child("2", new BatchNorm2d(cout));
  }
  forward(x: Tensor): Tensor {
    return this.#bn.forward(this.#convAct.forward(x));
  }
}

/** IFN's BasicConv: [ZeroPad2d] + conv, under `seq` (the pad holds index 0 for k ≥ 2). */
class BasicConv extends Module {
  readonly conv: Conv2d;
  constructor(cin: number, cout: number, kernel: number, bias: boolean, rng: Random) {
    super();
    // The zero pad is the conv's own padding; it only shifts the conv to index 1.
    this.conv = new Conv2d(cin, cout, { kernel, padding: kernel >> 1, bias }, rng);
    this.child("seq", new ModuleList(kernel >= 2 ? [new Fused(), this.conv] : [this.conv]));
  }
}

/** sigmoid(conv7×7([mean over C, max over C])) → [B, 1, H, W]. */
class SpatialAttention extends Module {
  readonly #conv: BasicConv;
  constructor(rng: Random) {
    super();
    this.#conv = this.child("conv", new BasicConv(2, 1, 7, false, rng));
  }
  forward(x: Tensor): Tensor {
    return this.#conv.conv.forward(channelMeanMax(x), "sigmoid");
  }
}

/** CBAM channel attention (ratio 8): the shared fc1 (ReLU) → fc2 over the global average and
 * the global max, summed, then sigmoid → [B, C, 1, 1]. */
class ChannelAttention extends Module {
  readonly #fc1: BasicConv;
  readonly #fc2: BasicConv;
  constructor(channels: number, rng: Random) {
    super();
    this.#fc1 = this.child("fc1", new BasicConv(channels, channels / 8, 1, false, rng));
    this.#fc2 = this.child("fc2", new BasicConv(channels / 8, channels, 1, false, rng));
  }
  forward(x: Tensor): Tensor {
    const mlp = (p: Tensor) => this.#fc2.conv.forward(this.#fc1.conv.forward(p, "relu"));
    return sigmoid(add(mlp(adaptiveAvgPool2d(x, 1)), mlp(adaptiveMaxPool2d(x, 1))));
  }
}

/** One decoder level: [trans_conv of the previous level, ca] → conv blocks → sa → BN → out. */
interface Level {
  ca: ChannelAttention | null;
  convs: ConvPreluBn[];
  sa: SpatialAttention;
  bnSa: BatchNorm2d;
  out: BasicConv;
  /** Lifts this level's features to the next (none after the last). */
  up: ConvTranspose2d | null;
}

/** Open-CD's `IFN` backbone: (A, B) → [out1 … out5], 1 channel each at 1/16 … 1/1. */
export class IfnBackbone extends Module {
  readonly #encoder: Vgg16Features;
  readonly #levels: Level[] = [];

  constructor(rng: Random) {
    super();
    // One module under two names, as upstream's `self.encoder1 = self.encoder2 = ...`.
    this.#encoder = this.child("encoder1", new Vgg16Features(rng));
    this.child("encoder2", this.#encoder);
    const sa = [1, 2, 3, 4, 5].map((k) => this.child(`sa${k}`, new SpatialAttention(rng)));
    // Built but never called upstream: they stay in the state_dict and get no gradient.
    this.child("ca1", new ChannelAttention(1024, rng));
    this.child("bn_ca1", new BatchNorm2d(1024));
    // Conv blocks per level (input channels first), its ChannelAttention width and lift.
    const plan: { convs: number[]; ca?: number; up?: number }[] = [
      { convs: [1024, 512, 512], up: 512 },
      { convs: [1536, 512, 256, 256], ca: 1536, up: 256 },
      { convs: [768, 256, 128, 128], ca: 768, up: 128 },
      { convs: [384, 128, 64, 64], ca: 384, up: 64 },
      { convs: [192, 64, 32, 16], ca: 192 },
    ];
    plan.forEach((p, i) => {
      const k = i + 1;
      // Registered in upstream's order: ca, (bn_ca2), conv blocks, bn_sa, out conv, trans_conv.
      const ca = p.ca ? this.child(`ca${k}`, new ChannelAttention(p.ca, rng)) : null;
      if (k === 2) this.child("bn_ca2", new BatchNorm2d(1536)); // unused, as bn_ca1
      const convs: ConvPreluBn[] = [];
      for (let j = 0; j + 1 < p.convs.length; j++) {
        convs.push(
          this.child(`o${k}_conv${j + 1}`, new ConvPreluBn(p.convs[j], p.convs[j + 1], rng)),
        );
      }
      const width = p.convs[p.convs.length - 1];
      const bnSa = this.child(`bn_sa${k}`, new BatchNorm2d(width));
      const out = this.child(
        `o${k}_conv${convs.length + 1}`,
        new BasicConv(width, 1, 1, true, rng),
      );
      const up = p.up
        ? this.child(
          `trans_conv${k}`,
          new ConvTranspose2d(p.up, p.up, { kernel: 2, stride: 2 }, rng),
        )
        : null;
      this.#levels.push({ ca, convs, sa: sa[i], bnSa, out, up });
    });
  }

  /** out1 … out5; the first four only when `withAux` (deep supervision), else null. */
  forward(a: Tensor, b: Tensor, withAux: boolean): (Tensor | null)[] {
    // The encoder runs without gradient (upstream's torch.no_grad()): it is never trained.
    const [fa, fb] = noGrad(() => [this.#encoder.forward(a), this.#encoder.forward(b)]);
    const outs: (Tensor | null)[] = [];
    let x: Tensor | null = null;
    this.#levels.forEach((l, i) => {
      const t = fa.length - 1 - i; // the taps from 1/16 up to 1/1
      x = x === null ? concat([fa[t], fb[t]], 1) : concat([x, fa[t], fb[t]], 1);
      if (l.ca) x = mul(l.ca.forward(x), x);
      for (const c of l.convs) x = c.forward(x);
      x = l.bnSa.forward(mul(l.sa.forward(x), x));
      const last = i === this.#levels.length - 1;
      outs.push(last || withAux ? l.out.conv.forward(x) : null);
      if (l.up) x = l.up.forward(x);
    });
    return outs;
  }
}

/** IFN change detector: the 1-channel change logit (out5), with deep supervision out1…out4. */
export class Ifn extends Module implements ChangeDetector {
  readonly backbone: IfnBackbone;
  /** out1…out4 of the last forward that computed them (training or with gradients). */
  #aux: Tensor[] = [];

  constructor(seed = 0) {
    super();
    this.backbone = this.child("backbone", new IfnBackbone(new Random(seed)));
  }

  forward(a: Tensor, b: Tensor, tap?: Tap): Tensor {
    const withAux = this.training || isGradEnabled() || tap !== undefined;
    const outs = this.backbone.forward(a, b, withAux);
    this.#aux = withAux ? outs.slice(0, 4) as Tensor[] : [];
    this.#aux.forEach((t, k) => tap?.(`aux${k}`, t));
    return outs[4]!;
  }

  /** DSIdentityHead's loss: Σ BCE(resize(out_k, label size)) over out1…out4, weight 1. */
  auxLoss(labels: Tensor): Tensor {
    if (this.#aux.length === 0) throw new Error("IFN auxLoss: no deep-supervision outputs kept");
    const [h, w] = labels.shape.slice(-2);
    return this.#aux
      .map((o) =>
        cdLoss(interpolate(o, { size: [h, w], mode: "bilinear", alignCorners: false }), labels).loss
      )
      .reduce((s, l) => add(s, l));
  }
}
