// ChangerEx (Fang et al., "Changer: Feature Interaction is What You Need for Change Detection",
// TGRS 2023) as Open-CD builds it for the JL1-CD paper (configs/changer/changer_ex_*_cgwx.py),
// with a MiT-b0 / MiT-b1 (IA_MixVisionTransformer), ResNetV1c-18 (IA_ResNetV1c) or ResNeSt-50
// (IA_ResNeSt) encoder:
//
//   backbone   both dates run the shared backbone stage by stage, and an interaction layer
//              follows each stage (identity, spatial exchange, channel exchange twice); its
//              outputs feed both the head and the next stage
//   head       Changer: per date, SegFormer-style fusion of the 4 levels to channels/2; FDAF
//              (a flow per date, predicted from both, warps each date onto the other); the
//              differences through a MixFFN "discriminator"; a 1×1 classifier; ×4 bilinear
//
// Where the backbone has no batch statistics (MiT; BN in eval) both dates travel as one [2B, …]
// batch, which the exchange op takes as two halves; a BN backbone in training runs each date
// alone, as Open-CD does. The head always runs each date on its own, so its BatchNorms see one
// date's batch statistics in training. Names follow Open-CD's state_dict.

import { device } from "../engine/device.ts";
import { GELU } from "../engine/nn/activation.ts";
import { Conv2d } from "../engine/nn/conv.ts";
import { Dropout2d } from "../engine/nn/dropout.ts";
import { Module, ModuleList, Sequential } from "../engine/nn/module.ts";
import { InstanceNorm2d } from "../engine/nn/norm.ts";
import { add, div, sub } from "../engine/ops/elementwise.ts";
import { exchange, type ExchangeMode } from "../engine/ops/exchange.ts";
import { gridSample } from "../engine/ops/grid_sample.ts";
import { concat, permute, slice } from "../engine/ops/layout.ts";
import { interpolate } from "../engine/ops/resample.ts";
import { Random } from "../engine/random.ts";
import { type Tensor, tensor, write } from "../engine/tensor.ts";
import { MIT_B0, MIT_B1, MixFfnConvs, MixVisionTransformer } from "./mit.ts";
import { ResNet } from "./resnet.ts";
import { ResNeSt } from "./resnest.ts";
import { ConvModule1x1 } from "./segformer_head.ts";
import type { ChangeDetector, Tap } from "./model.ts";

/** torch.linspace(−1, 1, n) in float32 as PyTorch's CPU kernel forms it (the first half counts
 * up from −1, the second down from 1). */
function linspace(n: number): Float32Array {
  const out = new Float32Array(n);
  if (n === 1) return out.fill(-1);
  const step = Math.fround(2 / (n - 1));
  const half = Math.floor(n / 2);
  for (let i = 0; i < n; i++) {
    out[i] = i < half ? -1 + Math.fround(step * i) : 1 - Math.fround(step * (n - 1 - i));
  }
  return out;
}

/** Constants of warp() per device and plane size: the identity grid [h, w, 2] and the flow's
 * divisors [w, h]. Kept for the process, as compiled pipelines are (a few sizes per run). */
const warpConstants = new WeakMap<GPUDevice, Map<string, { grid: Tensor; norm: Tensor }>>();

function warpConstantsFor(h: number, w: number): { grid: Tensor; norm: Tensor } {
  const dev = device();
  let bySize = warpConstants.get(dev);
  if (!bySize) warpConstants.set(dev, bySize = new Map());
  const key = `${h}x${w}`;
  let c = bySize.get(key);
  if (!c) {
    const gx = linspace(w), gy = linspace(h);
    const grid = new Float32Array(h * w * 2);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        grid[2 * (y * w + x)] = gx[x];
        grid[2 * (y * w + x) + 1] = gy[y];
      }
    }
    c = { grid: tensor(grid, [h, w, 2]).keep(), norm: tensor([w, h], [2]).keep() };
    bySize.set(key, c);
  }
  return c;
}

/** FDAF's warp: sample x [B, C, h, w] at the identity grid moved by flow [B, 2, h, w] (x offset
 * / w, y offset / h; Open-CD's divisors, not (w − 1)/2), bilinear, zero padding, align_corners
 * True. The loss reaches the flow through the grid. */
export function warp(x: Tensor, flow: Tensor): Tensor {
  const [, , h, w] = x.shape;
  const { grid, norm } = warpConstantsFor(h, w);
  return gridSample(x, add(grid, div(permute(flow, [0, 2, 3, 1]), norm)));
}

/** Flow Dual-Alignment Fusion (`neck_layer`): a flow per date from both dates' features, each
 * date warped by its flow, minus the other date; output cat(d_A, d_B). */
export class Fdaf extends Module {
  readonly flowMake: Sequential;
  constructor(channels: number, rng: Random) {
    super();
    const c2 = 2 * channels;
    this.flowMake = this.child(
      "flow_make",
      new Sequential(
        new Conv2d(c2, c2, { kernel: 5, padding: 2, groups: c2 }, rng),
        // nn.InstanceNorm2d's defaults: no affine, no running statistics, eps 1e-5.
        new InstanceNorm2d(c2),
        GELU(),
        new Conv2d(c2, 4, { kernel: 1, bias: false }, rng),
      ),
    );
  }
  forward(a: Tensor, b: Tensor, tap?: Tap): Tensor {
    const flow = this.flowMake.forward(concat([a, b], 1));
    tap?.("flow", flow);
    const dA = sub(warp(a, slice(flow, 1, 0, 2)), b);
    const dB = sub(warp(b, slice(flow, 1, 2, 4)), a);
    return concat([dA, dB], 1);
  }
}

/** Changer's MixFFN on NCHW with its internal residual: x + fc2(GELU(dw(fc1(x)))) (its dropout
 * and DropPath have p = 0). */
class MixFfn extends Module {
  readonly layers: MixFfnConvs;
  constructor(channels: number, hidden: number, rng: Random) {
    super();
    this.layers = this.child("layers", new MixFfnConvs(channels, hidden, rng));
  }
  forward(x: Tensor): Tensor {
    return add(x, this.layers.forward(x));
  }
}

/** Open-CD's Changer decode head, initialised as Changer.init_weights() leaves it: `conv_seg`
 * N(0, 0.01) and bias 0 (BaseDecodeHead's init_cfg); `fusion_conv` a ConvModule that mmengine
 * reaches, so kaiming normal (fan_out, ReLU) and BN 1/0; `convs` sit in a plain nn.ModuleList,
 * which mmengine's init_weights does not descend into, so they and FDAF / the discriminator keep
 * PyTorch's defaults. */
export class ChangerHead extends Module {
  readonly convSeg: Conv2d;
  readonly dropout: Dropout2d;
  readonly convs: ModuleList<ConvModule1x1>;
  readonly fusionConv: ConvModule1x1;
  readonly neckLayer: Fdaf;
  readonly discriminator: MixFfn;
  constructor(inChannels: number[], rng: Random, channels = 128, classes = 2, dropout = 0.1) {
    super();
    // BaseDecodeHead builds conv_seg and dropout first.
    this.convSeg = this.child("conv_seg", new Conv2d(channels, classes, { kernel: 1 }, rng));
    write(this.convSeg.weight, rng.normal(this.convSeg.weight.size, 0.01));
    write(this.convSeg.bias!, new Float32Array(classes));
    this.dropout = this.child("dropout", new Dropout2d(dropout));
    this.convs = this.child(
      "convs",
      new ModuleList(
        inChannels.map((c) => new ConvModule1x1(c, channels, rng, { kaiming: false })),
      ),
    );
    const fused = channels / 2;
    this.fusionConv = this.child(
      "fusion_conv",
      new ConvModule1x1(channels * inChannels.length, fused, rng),
    );
    this.neckLayer = this.child("neck_layer", new Fdaf(fused, rng));
    this.discriminator = this.child("discriminator", new MixFfn(channels, channels, rng));
  }

  /** One date's levels → 1×1 conv + BN + ReLU each, resized to level 0, fused to channels/2. */
  #baseForward(levels: Tensor[]): Tensor {
    const size = [levels[0].shape[2], levels[0].shape[3]] as const;
    const outs = levels.map((x, i) => {
      const y = this.convs.items[i].forward(x);
      // mmseg's resize to level 0's own size is an exact copy: skip it.
      return i === 0 ? y : interpolate(y, { size, mode: "bilinear" });
    });
    const joined = concat(outs, 1);
    // The resized levels are read by no backward rule once joined (the concat is kept for the
    // fusion conv's weight gradient): they go (Tensor.evict), never written again.
    for (const t of outs.slice(1)) t.evict();
    return this.fusionConv.forward(joined);
  }

  /** Levels of A and of B (after the interactions) → logits [B, classes, h0, w0]. */
  forward(a: Tensor[], b: Tensor[], tap?: Tap): Tensor {
    const d = this.neckLayer.forward(this.#baseForward(a), this.#baseForward(b), tap);
    return this.convSeg.forward(this.dropout.forward(this.discriminator.forward(d)));
  }
}

/** The interaction after each MiT stage: null = identity (Open-CD's TwoIdentity). */
export const CHANGER_EX_INTERACTIONS: readonly (ExchangeMode | null)[] = [
  null,
  "spatial",
  "channel",
  "channel",
];

/** What ChangerEx needs of a backbone (MiT, mmseg's ResNet or ResNeSt): a stem (identity for
 * MiT), stages run one at a time so that the interactions can act between them, each stage's
 * output channels, and whether it keeps batch statistics (BatchNorm). */
export interface InteractionBackbone extends Module {
  readonly stageChannels: readonly number[];
  readonly batchStatistics: boolean;
  stem(x: Tensor): Tensor;
  stage(i: number, x: Tensor): Tensor;
}

/** Open-CD's ChangerEx configurations: backbone and head width (Changer's `channels`). */
export const CHANGER_EX_VARIANTS = {
  mit_b0: { backbone: (seed: number) => new MixVisionTransformer(MIT_B0, seed), channels: 128 },
  mit_b1: { backbone: (seed: number) => new MixVisionTransformer(MIT_B1, seed), channels: 128 },
  r18: { backbone: (seed: number) => new ResNet({ depth: 18 }, new Random(seed)), channels: 128 },
  s50: { backbone: (seed: number) => new ResNeSt(50, new Random(seed)), channels: 256 },
} satisfies Record<string, { backbone(seed: number): InteractionBackbone; channels: number }>;
export type ChangerExVariant = keyof typeof CHANGER_EX_VARIANTS;

/** Both dates' features: one [2B, …] batch, or one tensor per date. */
type Dates = Tensor | [Tensor, Tensor];
const eachDate = (x: Dates, f: (t: Tensor) => Tensor): Dates =>
  Array.isArray(x) ? [f(x[0]), f(x[1])] : f(x);

/** ChangerEx change detector: 2-channel logits (softmax form). Inputs must be multiples of 32
 * (Open-CD pads to that; every backbone here halves the size five times). */
export class ChangerEx extends Module implements ChangeDetector {
  readonly backbone: InteractionBackbone;
  readonly head: ChangerHead;
  constructor(
    seed = 0,
    readonly variant: ChangerExVariant = "mit_b0",
    readonly interactions: readonly (ExchangeMode | null)[] = CHANGER_EX_INTERACTIONS,
    /** Exchange fraction p of Open-CD's layers (every int(1/p)-th column or channel). */
    readonly exchangeP = 1 / 2,
  ) {
    super();
    const { backbone, channels } = CHANGER_EX_VARIANTS[variant];
    this.backbone = this.child("backbone", backbone(seed));
    const levels = this.backbone.stageChannels;
    if (interactions.length !== levels.length) {
      throw new Error(`ChangerEx: ${interactions.length} interactions for ${levels.length} stages`);
    }
    // A stream of its own, so the head's draws do not repeat the backbone's.
    const rng = new Random((seed ^ 0x9e3779b9) >>> 0);
    this.head = this.child("decode_head", new ChangerHead([...levels], rng, channels));
  }

  forward(a: Tensor, b: Tensor, tap?: Tap): Tensor {
    const [n, , h, w] = a.shape;
    if (h % 32 || w % 32) {
      throw new Error(`ChangerEx needs H and W divisible by 32 (pad the input), got ${h}×${w}`);
    }
    // Open-CD runs the backbone on each date in turn. Without batch statistics (MiT, or BN in
    // eval) one [2B] batch is the same computation; in training, BN must see each date alone.
    const apart = this.training && this.backbone.batchStatistics;
    const halves = (x: Dates): [Tensor, Tensor] =>
      Array.isArray(x) ? x : [slice(x, 0, 0, n), slice(x, 0, n, 2 * n)];
    let x: Dates = eachDate(apart ? [a, b] : concat([a, b], 0), (t) => this.backbone.stem(t));
    const levelsA: Tensor[] = [], levelsB: Tensor[] = [];
    for (let i = 0; i < this.interactions.length; i++) {
      x = eachDate(x, (t) => this.backbone.stage(i, t));
      const mode = this.interactions[i];
      if (mode) {
        x = exchange(Array.isArray(x) ? concat(x, 0) : x, mode, this.exchangeP);
        if (apart) x = halves(x);
      }
      const [fa, fb] = halves(x);
      tap?.(`feat.s${i + 1}`, fa);
      levelsA.push(fa);
      levelsB.push(fb);
    }
    const logits = this.head.forward(levelsA, levelsB, tap);
    tap?.("head", logits);
    return interpolate(logits, { size: [h, w], mode: "bilinear" });
  }
}

/** ChangerEx with one of Open-CD's backbones (MiT-b0 by default; MiT-b1 keeps the 128-channel
 * head on b1's wider levels). */
export function createChangerEx(seed?: number, variant: ChangerExVariant = "mit_b0"): ChangerEx {
  return new ChangerEx(seed, variant);
}
