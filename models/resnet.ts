// mmseg's ResNet backbone (v1.2.2) with BasicBlocks (depths 18 and 34), as the Open-CD detectors
// configure it: ResNetV1c's deep stem (three 3×3 convs) or the 7×7 stem, any number of stages
// with per-stage strides and dilations, outputs at chosen stages. Parameter names follow mmseg's
// state_dict (stem.0 … stem.7 or conv1/bn1, layer{i}.{j}.conv1/bn1/conv2/bn2/downsample.{0,1}),
// so Open-CD checkpoints of BIT, ChangerEx-R18 or STANet load by name.
//
// Seeded creation initialises as mmseg does from scratch (pretrained None): every conv
// kaiming_normal(fan_out, relu), every BN weight 1 and bias 0, and zero_init_residual sets each
// block's second BN (bn2) to 0 so that a block starts as its shortcut. In eval every conv → BN
// (→ ReLU) runs as one conv with the BN folded in (engine/nn/fold.ts convThenBn).

import { BatchNorm2d } from "../engine/nn/norm.ts";
import { Conv2d } from "../engine/nn/conv.ts";
import { convThenBn, type EvalFolding } from "../engine/nn/fold.ts";
import { Module, ModuleList } from "../engine/nn/module.ts";
import { addRelu } from "../engine/ops/elementwise.ts";
import { maxPool2d } from "../engine/ops/pool.ts";
import type { Random } from "../engine/random.ts";
import { type Tensor, write } from "../engine/tensor.ts";
import { kaimingFanOut } from "./init.ts";

function conv(
  cin: number,
  cout: number,
  kernel: number,
  o: { stride?: number; padding?: number; dilation?: number },
  rng: Random,
): Conv2d {
  const c = new Conv2d(cin, cout, { kernel, bias: false, ...o }, rng);
  return kaimingFanOut(c, rng);
}

/** 1×1 conv (stride s) + BN on the shortcut, named downsample.0 / downsample.1. */
class Downsample extends Module implements EvalFolding {
  readonly #conv: Conv2d;
  readonly #bn: BatchNorm2d;
  foldInEval = true;
  constructor(cin: number, cout: number, stride: number, rng: Random) {
    super();
    this.#conv = this.child("0", conv(cin, cout, 1, { stride }, rng));
    this.#bn = this.child("1", new BatchNorm2d(cout));
  }
  forward(x: Tensor): Tensor {
    return convThenBn(this.#conv, this.#bn, x, "none", this.foldInEval);
  }
}

/** out = ReLU(bn2(conv2(ReLU(bn1(conv1 x)))) + shortcut(x)); conv1 carries the stride and the
 * dilation (padding = dilation), conv2 is a plain 3×3 (mmseg's BasicBlock). */
export class BasicBlock extends Module implements EvalFolding {
  foldInEval = true;
  readonly #conv1: Conv2d;
  readonly #bn1: BatchNorm2d;
  readonly #conv2: Conv2d;
  readonly #bn2: BatchNorm2d;
  readonly #downsample: Downsample | null;
  constructor(
    cin: number,
    planes: number,
    stride: number,
    dilation: number,
    rng: Random,
    zeroInitResidual: boolean,
  ) {
    super();
    this.#conv1 = this.child(
      "conv1",
      conv(cin, planes, 3, { stride, padding: dilation, dilation }, rng),
    );
    this.#bn1 = this.child("bn1", new BatchNorm2d(planes));
    this.#conv2 = this.child("conv2", conv(planes, planes, 3, { padding: 1 }, rng));
    this.#bn2 = this.child("bn2", new BatchNorm2d(planes));
    if (zeroInitResidual) write(this.#bn2.weight, new Float32Array(planes));
    this.#downsample = stride !== 1 || cin !== planes
      ? this.child("downsample", new Downsample(cin, planes, stride, rng))
      : null;
  }
  forward(x: Tensor): Tensor {
    const y = convThenBn(this.#conv1, this.#bn1, x, "relu", this.foldInEval);
    const z = convThenBn(this.#conv2, this.#bn2, y, "none", this.foldInEval);
    return addRelu(z, this.#downsample ? this.#downsample.forward(x) : x);
  }
}

/** ResNetV1c's deep stem: 3×3 s2 (→ stem/2) + BN + ReLU, 3×3 (stem/2) + BN + ReLU, 3×3 (→ stem)
 * + BN + ReLU, named as nn.Sequential with the ReLUs at 2, 5, 8. */
export class DeepStem extends Module implements EvalFolding {
  foldInEval = true;
  readonly #convs: Conv2d[];
  readonly #bns: BatchNorm2d[];
  constructor(cin: number, channels: number, rng: Random) {
    super();
    const half = channels / 2;
    const widths = [[cin, half, 2], [half, half, 1], [half, channels, 1]];
    this.#convs = widths.map(([i, o, stride], k) =>
      this.child(String(3 * k), conv(i, o, 3, { stride, padding: 1 }, rng))
    );
    this.#bns = widths.map(([, o], k) => this.child(String(3 * k + 1), new BatchNorm2d(o)));
  }
  forward(x: Tensor): Tensor {
    for (let k = 0; k < 3; k++) {
      x = convThenBn(this.#convs[k], this.#bns[k], x, "relu", this.foldInEval);
    }
    return x;
  }
}

/** The 7×7 stride-2 stem of ResNetV1b (conv1 + bn1 + ReLU at the backbone's top level, which
 * owns its folding). */
class PlainStem {
  constructor(readonly conv1: Conv2d, readonly bn1: BatchNorm2d, readonly owner: EvalFolding) {}
  forward(x: Tensor): Tensor {
    return convThenBn(this.conv1, this.bn1, x, "relu", this.owner.foldInEval);
  }
}

/** BasicBlock counts per stage. */
const BLOCKS: Record<number, number[]> = { 18: [2, 2, 2, 2], 34: [3, 4, 6, 3] };

export interface ResNetConfig {
  /** 18 or 34 (BasicBlock depths; the Bottleneck depths are not built here). */
  depth: number;
  inChannels?: number;
  /** Default 64. */
  stemChannels?: number;
  /** Default 64; stage i has base·2^i channels. */
  baseChannels?: number;
  /** 1–4, default 4. */
  numStages?: number;
  /** Stride of each stage's first block, default (1, 2, 2, 2). */
  strides?: number[];
  /** Default all 1. */
  dilations?: number[];
  /** Stages whose outputs forward returns, default all. */
  outIndices?: number[];
  /** Three 3×3 convs (ResNetV1c) instead of one 7×7; default true. */
  deepStem?: boolean;
  /** The first block of a dilated stage uses half the dilation (mmseg's contract_dilation). */
  contractDilation?: boolean;
  /** bn2 of every block starts at 0 (mmseg default true). */
  zeroInitResidual?: boolean;
}

/** mmseg ResNet with BasicBlocks; forward returns the outputs of `outIndices`' stages. */
export class ResNet extends Module implements EvalFolding {
  /** The plain stem's (the deep stem and the blocks have their own). */
  foldInEval = true;
  readonly #stem: DeepStem | PlainStem;
  readonly #layers: BasicBlock[][] = [];
  readonly outIndices: number[];
  /** Channels of each stage's output. */
  readonly stageChannels: number[];

  constructor(cfg: ResNetConfig, rng: Random) {
    super();
    const blocks = BLOCKS[cfg.depth];
    if (!blocks) {
      throw new Error(`ResNet depth ${cfg.depth}: only the BasicBlock depths 18 and 34 are built`);
    }
    const stages = cfg.numStages ?? 4;
    const strides = cfg.strides ?? [1, 2, 2, 2].slice(0, stages);
    const dilations = cfg.dilations ?? Array(stages).fill(1);
    if (stages < 1 || stages > 4 || strides.length !== stages || dilations.length !== stages) {
      throw new Error(
        `ResNet: ${stages} stages need as many strides (${strides}) and dilations (${dilations})`,
      );
    }
    this.outIndices = cfg.outIndices ?? [...Array(stages).keys()];
    if (this.outIndices.some((i) => i < 0 || i >= stages)) {
      throw new Error(`ResNet: out indices ${this.outIndices} outside stages 0…${stages - 1}`);
    }
    const cin = cfg.inChannels ?? 3;
    const stem = cfg.stemChannels ?? 64;
    const base = cfg.baseChannels ?? 64;
    if (cfg.deepStem ?? true) {
      this.#stem = this.child("stem", new DeepStem(cin, stem, rng));
    } else {
      this.#stem = new PlainStem(
        this.child("conv1", conv(cin, stem, 7, { stride: 2, padding: 3 }, rng)),
        this.child("bn1", new BatchNorm2d(stem)),
        this,
      );
    }
    const zeroInit = cfg.zeroInitResidual ?? true;
    let inplanes = stem;
    this.stageChannels = [];
    for (let i = 0; i < stages; i++) {
      const planes = base << i;
      const d = dilations[i];
      const first = d > 1 && cfg.contractDilation ? d / 2 : d;
      const layer: BasicBlock[] = [];
      for (let j = 0; j < blocks[i]; j++) {
        const blk = new BasicBlock(
          j === 0 ? inplanes : planes,
          planes,
          j === 0 ? strides[i] : 1,
          j === 0 ? first : d,
          rng,
          zeroInit,
        );
        layer.push(blk);
      }
      this.#layers.push(this.child(`layer${i + 1}`, new ModuleList(layer)).items);
      this.stageChannels.push(planes);
      inplanes = planes;
    }
  }

  /** BatchNorm keeps batch statistics in training (ChangerEx runs the dates apart then). */
  readonly batchStatistics = true;

  /** The stem and its 3×3 stride-2 max-pool: image → stage 1's input at 1/4. */
  stem(x: Tensor): Tensor {
    return maxPool2d(this.#stem.forward(x), { kernel: 3, stride: 2, padding: 1 });
  }

  /** Stage i (0-based): its blocks in turn. */
  stage(i: number, x: Tensor): Tensor {
    const layer = this.#layers[i];
    if (!layer) throw new Error(`ResNet: no stage ${i} (has ${this.#layers.length})`);
    for (const blk of layer) x = blk.forward(x);
    return x;
  }

  forward(x: Tensor): Tensor[] {
    x = this.stem(x);
    const outs: Tensor[] = [];
    for (let i = 0; i < this.#layers.length; i++) {
      x = this.stage(i, x);
      if (this.outIndices.includes(i)) outs.push(x);
    }
    return outs;
  }
}
