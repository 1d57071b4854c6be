// mmseg's ResNeSt (Zhang et al. 2020, "ResNeSt: Split-Attention Networks"; mmseg v1.2.2
// mmseg/models/backbones/resnest.py) as Open-CD's IA_ResNeSt configures it for ChangerEx-S50:
// ResNetV1d's deep stem (three 3×3 convs) and average-pool shortcuts, Bottlenecks whose 3×3 conv
// is a radix-2 split-attention conv, and a 3×3 average pool in place of the stride. Names follow
// mmseg's state_dict (stem.*, layer{i}.{j}.conv1/bn1/conv2.{conv,bn0,fc1,bn1,fc2}/conv3/bn3,
// downsample.{1,2}; downsample.0 is the parameter-free AvgPool2d).
//
// Seeded creation initialises as mmseg does from scratch (pretrained None): every conv, fc1 and
// fc2 included, kaiming_normal(fan_out, relu) with bias 0, every BN 1 / 0. mmseg's
// zero_init_residual tests `block is Bottleneck` with ResNet's own Bottleneck class, which
// ResNeSt's subclass is not, so no BN starts at 0 here. In eval every conv → BN (→ ReLU) runs as
// one conv with the BN folded in (engine/nn/fold.ts convThenBn).

import { BatchNorm2d } from "../engine/nn/norm.ts";
import { Conv2d } from "../engine/nn/conv.ts";
import { convThenBn, type EvalFolding } from "../engine/nn/fold.ts";
import { Module, ModuleList } from "../engine/nn/module.ts";
import { add, addRelu, mul } from "../engine/ops/elementwise.ts";
import { slice } from "../engine/ops/layout.ts";
import { avgPool2d, maxPool2d } from "../engine/ops/pool.ts";
import { mean } from "../engine/ops/reduce.ts";
import { reshape } from "../engine/ops/shape.ts";
import { softmax } from "../engine/ops/softmax.ts";
import type { Random } from "../engine/random.ts";
import type { Tensor } from "../engine/tensor.ts";
import { kaimingFanOut } from "./init.ts";
import { DeepStem } from "./resnet.ts";

function conv(
  cin: number,
  cout: number,
  kernel: number,
  rng: Random,
  o: { padding?: number; groups?: number; bias?: boolean } = {},
): Conv2d {
  return kaimingFanOut(new Conv2d(cin, cout, { kernel, bias: false, ...o }, rng), rng);
}

/** Split-attention 3×3 conv with radix 2 (one cardinal group), stride 1: a grouped conv gives
 * two splits of C channels; their sum, pooled globally, passes fc1 → BN → ReLU → fc2; a softmax
 * over each channel's pair of logits weighs the splits. */
export class SplitAttentionConv2d extends Module implements EvalFolding {
  foldInEval = true;
  readonly conv: Conv2d;
  readonly bn0: BatchNorm2d;
  readonly fc1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly fc2: Conv2d;
  constructor(readonly channels: number, rng: Random, reductionFactor = 4) {
    super();
    const radix = 2;
    const inter = Math.max(Math.trunc((channels * radix) / reductionFactor), 32);
    this.conv = this.child(
      "conv",
      conv(channels, channels * radix, 3, rng, { padding: 1, groups: radix }),
    );
    this.bn0 = this.child("bn0", new BatchNorm2d(channels * radix));
    this.fc1 = this.child("fc1", conv(channels, inter, 1, rng, { bias: true }));
    this.bn1 = this.child("bn1", new BatchNorm2d(inter));
    this.fc2 = this.child("fc2", conv(inter, channels * radix, 1, rng, { bias: true }));
  }
  forward(x: Tensor): Tensor {
    const c = this.channels;
    const y = convThenBn(this.conv, this.bn0, x, "relu", this.foldInEval);
    const s0 = slice(y, 1, 0, c), s1 = slice(y, 1, c, 2 * c);
    const gap = mean(add(s0, s1), [2, 3], true);
    const z = convThenBn(this.fc1, this.bn1, gap, "relu", this.foldInEval);
    // RSoftmax: logits [B, 2C] as [B, radix, C], softmax over the radix.
    const n = x.shape[0];
    const att = softmax(reshape(this.fc2.forward(z), [n, 2, c]), 1);
    const a0 = reshape(slice(att, 1, 0, 1), [n, c, 1, 1]);
    const a1 = reshape(slice(att, 1, 1, 2), [n, c, 1, 1]);
    return add(mul(a0, s0), mul(a1, s1));
  }
}

/** avg_down shortcut: AvgPool2d(stride, ceil_mode, count_include_pad False) — an identity at
 * stride 1, so absent there — then a 1×1 conv and BN (downsample.1 / downsample.2). */
class AvgDownsample extends Module implements EvalFolding {
  foldInEval = true;
  readonly #conv: Conv2d;
  readonly #bn: BatchNorm2d;
  constructor(cin: number, cout: number, readonly stride: number, rng: Random) {
    super();
    this.#conv = this.child("1", conv(cin, cout, 1, rng));
    this.#bn = this.child("2", new BatchNorm2d(cout));
  }
  forward(x: Tensor): Tensor {
    const s = this.stride;
    if (s > 1) {
      x = avgPool2d(x, { kernel: s, stride: s, ceilMode: true, countIncludePad: false });
    }
    return convThenBn(this.#conv, this.#bn, x, "none", this.foldInEval);
  }
}

/** ResNeSt Bottleneck: ReLU(bn3(conv3(avd(conv2(ReLU(bn1(conv1 x)))))) + shortcut(x)), where
 * avd is AvgPool2d(3, stride, padding 1) (zero padding counted) in a strided block. */
export class ResNeStBottleneck extends Module implements EvalFolding {
  static readonly expansion = 4;
  foldInEval = true;
  readonly #conv1: Conv2d;
  readonly #bn1: BatchNorm2d;
  readonly #conv2: SplitAttentionConv2d;
  readonly #conv3: Conv2d;
  readonly #bn3: BatchNorm2d;
  readonly #downsample: AvgDownsample | null;
  constructor(cin: number, planes: number, readonly stride: number, rng: Random) {
    super();
    const out = planes * ResNeStBottleneck.expansion;
    this.#conv1 = this.child("conv1", conv(cin, planes, 1, rng));
    this.#bn1 = this.child("bn1", new BatchNorm2d(planes));
    this.#conv2 = this.child("conv2", new SplitAttentionConv2d(planes, rng));
    this.#conv3 = this.child("conv3", conv(planes, out, 1, rng));
    this.#bn3 = this.child("bn3", new BatchNorm2d(out));
    this.#downsample = stride !== 1 || cin !== out
      ? this.child("downsample", new AvgDownsample(cin, out, stride, rng))
      : null;
  }
  forward(x: Tensor): Tensor {
    let y = this.#conv2.forward(convThenBn(this.#conv1, this.#bn1, x, "relu", this.foldInEval));
    const s = this.stride;
    if (s > 1) y = avgPool2d(y, { kernel: 3, stride: s, padding: 1 });
    const z = convThenBn(this.#conv3, this.#bn3, y, "none", this.foldInEval);
    return addRelu(z, this.#downsample ? this.#downsample.forward(x) : x);
  }
}

/** Bottleneck counts per stage. */
const BLOCKS: Record<number, number[]> = { 50: [3, 4, 6, 3], 101: [3, 4, 23, 3] };

/** mmseg ResNeSt (radix 2, one group, reduction 4, avg_down_stride; strides 1, 2, 2, 2; no
 * dilation), stage by stage as ChangerEx drives it, or all stages through forward. */
export class ResNeSt extends Module {
  readonly #stem: DeepStem;
  readonly #layers: ResNeStBottleneck[][] = [];
  readonly stageChannels: number[] = [];
  /** BatchNorm keeps batch statistics in training (ChangerEx runs the dates apart then). */
  readonly batchStatistics = true;

  constructor(depth: number, rng: Random, stemChannels = 64, baseChannels = 64) {
    super();
    const blocks = BLOCKS[depth];
    if (!blocks) throw new Error(`ResNeSt depth ${depth}: only 50 and 101 are built`);
    this.#stem = this.child("stem", new DeepStem(3, stemChannels, rng));
    let inplanes = stemChannels;
    blocks.forEach((count, i) => {
      const planes = baseChannels << i;
      const layer = Array.from(
        { length: count },
        (_, j) =>
          new ResNeStBottleneck(
            j === 0 ? inplanes : planes * 4,
            planes,
            j === 0 && i > 0 ? 2 : 1,
            rng,
          ),
      );
      this.#layers.push(this.child(`layer${i + 1}`, new ModuleList(layer)).items);
      inplanes = planes * ResNeStBottleneck.expansion;
      this.stageChannels.push(inplanes);
    });
  }

  /** The deep stem and its 3×3 stride-2 max-pool: image → stage 1's input at 1/4. */
  stem(x: Tensor): Tensor {
    return maxPool2d(this.#stem.forward(x), { kernel: 3, stride: 2, padding: 1 });
  }

  /** Stage i (0-based): its Bottlenecks in turn. */
  stage(i: number, x: Tensor): Tensor {
    const layer = this.#layers[i];
    if (!layer) throw new Error(`ResNeSt: no stage ${i} (has ${this.#layers.length})`);
    for (const blk of layer) x = blk.forward(x);
    return x;
  }

  forward(x: Tensor): Tensor[] {
    x = this.stem(x);
    return this.#layers.map((_, i) => x = this.stage(i, x));
  }
}
