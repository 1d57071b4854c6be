// LightCDNet-s (Xing et al. 2023) as Open-CD builds it (configs/lightcdnet/
// lightcdnet_s_512x512_200k_cgwx.py): DIEncoderDecoder with
//   backbone `LightCDNet` (small): a stride-2 conv + LayerNorm2d + GELU per date, the shuffle
//     fusion of the two dates (ShuffleNetV2 blocks per date, TimeAttention, a 1×1 fuse) into F
//     at 1/2, then three ShuffleNetV2 stages, each closed by criss-cross attention applied twice;
//   neck `TinyFPN` over F and the stage outputs (lateral 1×1, nearest top-down, 3×3);
//   head `DS_FPNHead`: per level a 1×1 ConvModule, summed at 1/2 after bilinear resizes, 1×1
//     classifier; the logits are resized ×2 to the input;
//   a training-only `auxiliary_head` (mmseg FCNHead on F), whose CE ×0.4 joins the loss
//     (auxLoss); the decode CE uses mmseg's OHEM sampler (the registry recipe's loss.ohem).
// Names follow Open-CD's state_dict (backbone.*, neck.*, decode_head.*, auxiliary_head.*).

import { isGradEnabled } from "../engine/autograd.ts";
import { GELU } from "../engine/nn/activation.ts";
import { Conv2d } from "../engine/nn/conv.ts";
import { ConvBnAct } from "../engine/nn/conv_bn_act.ts";
import { type Layer, Module, ModuleList, Sequential } from "../engine/nn/module.ts";
import { BatchNorm2d } from "../engine/nn/norm.ts";
import { cdLoss } from "../engine/ops/cd_loss.ts";
import { add, mul, mulScalar, sigmoid } from "../engine/ops/elementwise.ts";
import { layerNorm2d } from "../engine/ops/layer_norm.ts";
import { concat, interleaveChannels, slice } from "../engine/ops/layout.ts";
import { mean } from "../engine/ops/reduce.ts";
import { interpolate } from "../engine/ops/resample.ts";
import { Random } from "../engine/random.ts";
import { full, type Tensor, write } from "../engine/tensor.ts";
import { CrissCrossAttention } from "./criss_cross.ts";
import { kaimingFanOut } from "./init.ts";
import type { ChangeDetector, Tap } from "./model.ts";
import { ConvModule1x1 } from "./segformer_head.ts";

/** channel_shuffle(cat(a, b), 2): channels a0, b0, a1, b1, … */
const shuffle = interleaveChannels;

/** A PyTorch nn.Sequential of conv → BN (→ ReLU) triples, its indices given per triple (the
 * ReLU takes an index of its own, hence the gaps). Runs as ConvBnAct (BN folded in eval). */
class ConvSeq extends Module implements Layer {
  readonly parts: ConvBnAct[];
  constructor(parts: { at: number; conv: Conv2d; relu: boolean; bn?: boolean }[]) {
    super();
    this.parts = parts.map(({ at, conv, relu, bn = true }) =>
      this.inline(
        new ConvBnAct({
          conv: [String(at), conv],
          bn: bn ? [String(at + 1), new BatchNorm2d(conv.outChannels)] : undefined,
          act: relu ? "relu" : "none",
        }),
      )
    );
  }
  forward(x: Tensor): Tensor {
    // A part's output between two parts is let go once the next part has read it (Tensor.evict):
    // a BatchNorm output is written again from its input and batch statistics for the next
    // conv's weight gradient, one pointwise pass in the backward (what has no recipe stays).
    let h = x;
    for (const [i, p] of this.parts.entries()) {
      const y = p.forward(h);
      if (i > 0) h.evict();
      h = y;
    }
    return h;
  }
}

const pw = (cin: number, cout: number, rng: Random) =>
  new Conv2d(cin, cout, { kernel: 1, bias: false }, rng);
const dw = (c: number, stride: number, rng: Random) =>
  new Conv2d(c, c, { kernel: 3, stride, padding: 1, groups: c, bias: false }, rng);

/** ShuffleNetV2 unit. Stride 1: the second half of the channels goes through 1×1 → depthwise
 * 3×3 → 1×1, the first passes; stride 2 (`down`): both branches see the whole input. The
 * halves are then interleaved (channel_shuffle). */
class ShuffleBlock extends Module implements Layer {
  readonly branch1: ConvSeq | null;
  readonly branch2: ConvSeq;
  constructor(cin: number, cout: number, readonly down: boolean, rng: Random) {
    super();
    const half = cout / 2;
    this.branch1 = down
      ? this.child(
        "branch1",
        new ConvSeq([
          { at: 0, conv: dw(cin, 2, rng), relu: false },
          { at: 2, conv: pw(cin, half, rng), relu: true },
        ]),
      )
      : null;
    this.branch2 = this.child(
      "branch2",
      new ConvSeq([
        { at: 0, conv: pw(down ? cin : half, half, rng), relu: true },
        { at: 3, conv: dw(half, down ? 2 : 1, rng), relu: false },
        { at: 5, conv: pw(half, half, rng), relu: true },
      ]),
    );
  }
  forward(x: Tensor): Tensor {
    if (this.branch1) return shuffle(this.branch1.forward(x), this.branch2.forward(x));
    const c = x.shape[1] / 2;
    return shuffle(slice(x, 1, 0, c), this.branch2.forward(slice(x, 1, c, 2 * c)));
  }
}

/** Open-CD's CCA: criss-cross attention applied `recurrence` (2) times with one set of
 * weights, so every pixel reaches every other. */
class CCA extends Module implements Layer {
  readonly cca: CrissCrossAttention;
  constructor(channels: number, rng: Random, readonly recurrence = 2) {
    super();
    this.cca = this.child("cca", new CrissCrossAttention(channels, rng));
  }
  forward(x: Tensor): Tensor {
    for (let i = 0; i < this.recurrence; i++) x = this.cca.forward(x);
    return x;
  }
}

/** Both dates' channel gates from their pooled concatenation: x ← x·σ(m) + x. */
class TimeAttention extends Module {
  readonly mlp: ConvSeq;
  constructor(channels: number, rng: Random) {
    super();
    const hidden = Math.max(Math.floor(channels / 16), 8);
    this.mlp = this.child(
      "mlp",
      new ConvSeq([
        { at: 0, conv: pw(2 * channels, hidden, rng), relu: true },
        { at: 3, conv: pw(hidden, 2 * channels, rng), relu: false, bn: false },
      ]),
    );
  }
  forward(a: Tensor, b: Tensor): [Tensor, Tensor] {
    const c = a.shape[1];
    const m = this.mlp.forward(mean(concat([a, b], 1), [2, 3], true));
    const gate = (x: Tensor, k: number) => add(mul(x, sigmoid(slice(m, 1, k * c, (k + 1) * c))), x);
    return [gate(a, 0), gate(b, 1)];
  }
}

/** shuffle_fusion: per date x + single_conv(stages(x)), TimeAttention, then a 1×1 fuse of the
 * interleaved dates → F. */
class ShuffleFusion extends Module {
  readonly stages: Sequential;
  readonly singleConv: ConvSeq;
  readonly timeAttn: TimeAttention;
  readonly finalConv: ConvSeq;
  constructor(c: number, blocks: number, rng: Random) {
    super();
    this.stages = this.child(
      "stages",
      new Sequential(
        new ConvSeq([{ at: 0, conv: pw(c, 4 * c, rng), relu: true }]),
        ...Array.from({ length: blocks }, () => new ShuffleBlock(4 * c, 4 * c, false, rng)),
      ),
    );
    this.singleConv = this.child(
      "single_conv",
      new ConvSeq([{ at: 0, conv: pw(4 * c, c, rng), relu: true }]),
    );
    this.timeAttn = this.child("time_attn", new TimeAttention(c, rng));
    this.finalConv = this.child(
      "final_conv",
      new ConvSeq([{ at: 0, conv: pw(2 * c, c, rng), relu: true }]),
    );
  }
  forward(a: Tensor, b: Tensor): Tensor {
    // Date by date: the BatchNorms must not mix the two dates' statistics in training.
    const single = (x: Tensor) => add(x, this.singleConv.forward(this.stages.forward(x)));
    const [ta, tb] = this.timeAttn.forward(single(a), single(b));
    return this.finalConv.forward(shuffle(ta, tb));
  }
}

/** mmseg's LayerNorm2d: each pixel's channel vector normalised (biased variance, eps 1e-6). */
class LayerNorm2d extends Module implements Layer {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(channels: number, readonly eps = 1e-6) {
    super();
    this.weight = this.param("weight", full([channels], 1));
    this.bias = this.param("bias", full([channels], 0));
  }
  forward(x: Tensor): Tensor {
    return layerNorm2d(x, { weight: this.weight, bias: this.bias, eps: this.eps });
  }
}

/** LightCDNet "small": widths [24, 48, 96, 192], stage repeats [4, 8, 4], 4 fusion blocks. */
class LightCDNetBackbone extends Module {
  readonly conv1: Sequential;
  readonly fusionConv: ShuffleFusion;
  readonly stages: Sequential;
  /** Upstream's outputs: F, then after stages 3, 11 and 15 (cumsum([4 − 1, 8, 4])). So stage
   * 2's output is taken before its CCA, stage 3's before its last block, and stages 16–18
   * run (as upstream's forward, which updates their BN statistics) without reaching any
   * output. */
  readonly taps = [3, 11, 15];
  constructor(rng: Random, widths = [24, 48, 96, 192], repeats = [4, 8, 4], blocks = 4) {
    super();
    this.conv1 = this.child(
      "conv1",
      new Sequential(
        new Conv2d(3, widths[0], { kernel: 3, stride: 2, padding: 1, bias: false }, rng),
        new LayerNorm2d(widths[0]),
        GELU(),
      ),
    );
    this.fusionConv = this.child("fusion_conv", new ShuffleFusion(widths[0], blocks, rng));
    const stages: (Module & Layer)[] = [];
    let cin = widths[0];
    repeats.forEach((n, s) => {
      const cout = widths[s + 1];
      for (let i = 0; i < n; i++) {
        stages.push(new ShuffleBlock(i === 0 ? cin : cout, cout, i === 0, rng));
      }
      cin = cout;
      stages.push(new CCA(cout, rng));
    });
    this.stages = this.child("stages", new Sequential(...stages));
  }
  forward(a: Tensor, b: Tensor): Tensor[] {
    let x = this.fusionConv.forward(this.conv1.forward(a), this.conv1.forward(b));
    const outs = [x];
    this.stages.layers.forEach((stage, i) => {
      x = stage.forward(x);
      if (this.taps.includes(i)) outs.push(x);
    });
    return outs;
  }
}

/** mmcv ConvModule without norm or activation (TinyFPN's): `conv` with bias. TinyFPN's
 * init_cfg (Xavier uniform, bias 0, on every Conv2d) runs after the ConvModules' own kaiming
 * init, and mmengine does not descend into the ModuleLists to redo theirs. */
function plainConvModule(cin: number, cout: number, kernel: number, rng: Random): ConvBnAct {
  const conv = new Conv2d(cin, cout, { kernel, padding: (kernel - 1) / 2 }, rng);
  const bound = Math.sqrt(6 / ((cin + cout) * kernel * kernel));
  write(conv.weight, rng.uniform(conv.weight.size, -bound, bound));
  write(conv.bias!, new Float32Array(cout));
  return new ConvBnAct({ conv: ["conv", conv] });
}

/** TinyFPN (custom_block "conv", early x used for the FPN): lateral 1×1, nearest top-down
 * sum, 3×3 per level; returns [F, P0, P1, P2, P3]. */
class TinyFPN extends Module {
  readonly lateral: ModuleList<ConvBnAct>;
  readonly fpn: ModuleList<ConvBnAct>;
  constructor(inChannels: number[], out: number, rng: Random) {
    super();
    this.lateral = this.child(
      "lateral_convs",
      new ModuleList(inChannels.map((c) => plainConvModule(c, out, 1, rng))),
    );
    this.fpn = this.child(
      "fpn_convs",
      new ModuleList(inChannels.map(() => plainConvModule(out, out, 3, rng))),
    );
  }
  forward(feats: Tensor[]): Tensor[] {
    const lat = feats.map((x, i) => this.lateral.items[i].forward(x));
    for (let i = lat.length - 1; i > 0; i--) {
      const size = [lat[i - 1].shape[2], lat[i - 1].shape[3]] as const;
      lat[i - 1] = add(lat[i - 1], interpolate(lat[i], { size, mode: "nearest" }));
    }
    return [feats[0], ...lat.map((x, i) => this.fpn.items[i].forward(x))];
  }
}

/** BaseDecodeHead's conv_seg: 1×1 with bias, init normal(0, 0.01) and bias 0. */
function convSeg(cin: number, classes: number, rng: Random): Conv2d {
  const conv = new Conv2d(cin, classes, { kernel: 1 }, rng);
  write(conv.weight, rng.normal(conv.weight.size, 0.01));
  write(conv.bias!, new Float32Array(classes));
  return conv;
}

/** DS_FPNHead over P0…P3 (F dropped): per level a 1×1 ConvModule, summed at P0's size after
 * bilinear resizes, then the classifier (no dropout). */
class DsFpnHead extends Module {
  readonly convSeg: Conv2d;
  readonly scaleHeads: ModuleList<Sequential>;
  constructor(levels: number, channels: number, classes: number, rng: Random) {
    super();
    this.convSeg = this.child("conv_seg", convSeg(channels, classes, rng));
    this.scaleHeads = this.child(
      "scale_heads",
      new ModuleList(
        Array.from(
          { length: levels },
          () => new Sequential(new ConvModule1x1(channels, channels, rng)),
        ),
      ),
    );
  }
  forward(levels: Tensor[]): Tensor {
    let y = this.scaleHeads.items[0].forward(levels[0]);
    const size = [y.shape[2], y.shape[3]] as const;
    for (let i = 1; i < levels.length; i++) {
      const s = this.scaleHeads.items[i].forward(levels[i]);
      y = add(y, interpolate(s, { size, mode: "bilinear", alignCorners: false }));
    }
    return this.convSeg.forward(y);
  }
}

/** mmseg FCNHead, num_convs 1, no concat, no dropout: ConvModule 3×3, then the classifier. */
class AuxFcnHead extends Module {
  readonly convSeg: Conv2d;
  readonly convs: Sequential;
  constructor(cin: number, channels: number, classes: number, rng: Random) {
    super();
    this.convSeg = this.child("conv_seg", convSeg(channels, classes, rng));
    const conv = new Conv2d(cin, channels, { kernel: 3, padding: 1, bias: false }, rng);
    this.convs = this.child(
      "convs",
      new Sequential(
        new ConvBnAct({
          conv: ["conv", kaimingFanOut(conv, rng)],
          bn: ["bn", new BatchNorm2d(channels)],
          act: "relu",
        }),
      ),
    );
  }
  forward(x: Tensor): Tensor {
    return this.convSeg.forward(this.convs.forward(x));
  }
}

/** The auxiliary head's loss weight (its loss_decode.loss_weight). */
const AUX_WEIGHT = 0.4;

export class LightCDNet extends Module implements ChangeDetector {
  readonly backbone: LightCDNetBackbone;
  readonly neck: TinyFPN;
  readonly decodeHead: DsFpnHead;
  readonly auxiliaryHead: AuxFcnHead;
  /** The auxiliary head's logits at 1/2 from the last forward that needed them. */
  #aux: Tensor | null = null;

  constructor(seed = 0, classes = 2) {
    super();
    const rng = new Random(seed);
    this.backbone = this.child("backbone", new LightCDNetBackbone(rng));
    const widths = [24, 48, 96, 192], channels = 48;
    this.neck = this.child("neck", new TinyFPN(widths, channels, rng));
    this.decodeHead = this.child(
      "decode_head",
      new DsFpnHead(widths.length, channels, classes, rng),
    );
    this.auxiliaryHead = this.child(
      "auxiliary_head",
      new AuxFcnHead(widths[0], widths[0], classes, rng),
    );
  }

  /** Taps: "head" (logits at 1/2, before the resize), "aux" (auxiliary logits at 1/2, when
   * computed: in training or a forward with gradients). */
  forward(a: Tensor, b: Tensor, tap?: Tap): Tensor {
    const feats = this.neck.forward(this.backbone.forward(a, b));
    const head = this.decodeHead.forward(feats.slice(1));
    tap?.("head", head);
    this.#aux = this.training || isGradEnabled() ? this.auxiliaryHead.forward(feats[0]) : null;
    if (this.#aux) tap?.("aux", this.#aux);
    const size = [a.shape[2], a.shape[3]] as const;
    return interpolate(head, { size, mode: "bilinear", alignCorners: false });
  }

  /** 0.4 × CE of the auxiliary head's logits, resized to the labels (no OHEM: the sampler is
   * the decode head's only). */
  auxLoss(labels: Tensor): Tensor {
    if (!this.#aux) {
      throw new Error("LightCDNet.auxLoss: no auxiliary output; run a training forward first");
    }
    const size = [labels.shape[1], labels.shape[2]] as const;
    const logits = interpolate(this.#aux, { size, mode: "bilinear", alignCorners: false });
    return mulScalar(cdLoss(logits, labels).loss, AUX_WEIGHT);
  }

  /** Parameters without the training-only auxiliary head (Table II's count). */
  inferenceParameterCount(): number {
    return this.parameterCount() - this.auxiliaryHead.parameterCount();
  }
}

export function createLightCDNet(seed = 0): LightCDNet {
  return new LightCDNet(seed);
}
