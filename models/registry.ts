// The model registry: a name and a small validated config per detector, with the recipe that
// the JL1-CD paper's Table II gives for it. The trainer reads the recipe from here.

import { noGrad } from "../engine/autograd.ts";
import { IMAGENET, type Normalize } from "../engine/normalize.ts";
import { countMacs } from "../engine/profiler.ts";
import { scope } from "../engine/scope.ts";
import { zeros } from "../engine/tensor.ts";
import { createBit } from "./bit.ts";
import { Cgnet } from "./cgnet.ts";
import { createChangeFormer } from "./changeformer.ts";
import { createChangerEx } from "./changer.ts";
import { FcSiam } from "./fc_siam.ts";
import { Ifn } from "./ifn.ts";
import type { ChangeDetector } from "./model.ts";
import { SNUNet } from "./snunet.ts";
import { TinyCD } from "./tinycd.ts";

/** Every registered model takes ImageNet-normalised inputs (engine/normalize.ts, which the
 * loader uses too). */
export const IMAGENET_NORM: Normalize = IMAGENET;

export interface Recipe {
  optimizer: "adamw";
  lr: number;
  weightDecay: number;
  betas: [number, number];
  /** Default MTKD weight λ (Table II; "-" there → 1e-4 here). */
  lambda: number;
  /** Open-CD's `optim_wrapper.paramwise_cfg.custom_keys`: LR and weight-decay multipliers by
   * parameter name, matched as mmengine does (engine/optim/param_groups.ts). */
  paramwise?: { customKeys: Record<string, { lrMult?: number; decayMult?: number }> };
  /** Loss beyond the plain CE: mmseg's OHEM pixel sampler (2-channel models; min_kept per
   * image), as Changer's decode_head.sampler. */
  loss?: { ohem?: { thresh: number; minKept: number } };
  /** Open-CD transforms added to the default augmentation (data/augment.ts AugmentOptions):
   * any-angle rotation, Changer's RotFlip, the A/B exchange. */
  augment?: OpenCdAugment;
  /** Parameters upstream never trains, by name prefix: IFN's VGG encoder runs under no_grad,
   * and some modules are built but never called. Their gradient stays None there, so PyTorch's
   * AdamW skips them (no update, no weight decay); here the optimiser never holds them. */
  frozen?: string[];
}

/** The Open-CD transforms a recipe can switch on: fields of data/augment.ts's AugmentOptions
 * (same names and meaning), which the trainer spreads over the default augmentation. Declared
 * here so that models/ need not import data/ (tests/engine/layers_test.ts checks the names). */
export interface OpenCdAugment {
  rotateProb?: number;
  rotateDegrees?: number;
  rotFlipProb?: number;
  swapProb?: number;
}

export interface ModelEntry {
  name: string;
  title: string;
  /** Build with seeded initialisation. */
  create(seed?: number): ChangeDetector;
  /** 1: one logit per pixel (sigmoid); 2: two class logits (softmax). */
  outputs: 1 | 2;
  normalize: Normalize;
  recipe: Recipe;
  /** Table II of the paper: parameters (M) and FLOPs (G) at 512×512. */
  paper: { params: number; flops: number };
  /** Input sides must be multiples of this (the model's deepest stride): whole-image runs pad
   * to it and crop back, as mmseg's size_divisor. */
  sizeDivisor: number;
  /** Smallest square side a training step takes at batch 1 (default 32): MiT's 1/32 level
   * must keep 2×2 positions, since the head's BatchNorm needs more than one per channel. */
  minSize?: number;
  /** Change probability above which a pixel is changed, the decode head's own (default 0.5;
   * mmseg's 0.3 for a 1-channel head whose config gives none, as IFN's). Eval, predict and the
   * runs' validation use it unless --threshold says otherwise. */
  threshold?: number;
}

/** The entry's probability threshold (0.5 unless it says otherwise). */
export function probabilityThreshold(entry: ModelEntry): number {
  return entry.threshold ?? 0.5;
}

const common = { optimizer: "adamw" as const, betas: [0.9, 0.99] as [number, number] };
const opencd = { optimizer: "adamw" as const, betas: [0.9, 0.999] as [number, number] };
/** Open-CD's standard pipeline: MultiImgRandomRotate(prob 0.5, degree 180), then the flips. */
const STANDARD_ROTATE = { rotateProb: 0.5, rotateDegrees: 180 };
/** SegFormer-style configs: no weight decay on norms (and PVT position blocks), head ×10 LR. */
const SEGFORMER_KEYS = {
  customKeys: { pos_block: { decayMult: 0 }, norm: { decayMult: 0 }, head: { lrMult: 10 } },
};

export const MODELS: Record<string, ModelEntry> = {
  fc_ef: {
    name: "fc_ef",
    title: "FC-EF (Daudt et al. 2018)",
    create: (seed) => new FcSiam("ef", seed),
    outputs: 2,
    normalize: IMAGENET_NORM,
    recipe: { ...common, lr: 1e-3, weightDecay: 1e-2, lambda: 1e-4 },
    paper: { params: 1.353, flops: 12.976 },
    sizeDivisor: 16,
  },
  fc_siam_conc: {
    name: "fc_siam_conc",
    title: "FC-Siam-Conc (Daudt et al. 2018)",
    create: (seed) => new FcSiam("conc", seed),
    outputs: 2,
    normalize: IMAGENET_NORM,
    recipe: { ...common, lr: 1e-3, weightDecay: 1e-2, lambda: 1e-4 },
    paper: { params: 1.548, flops: 19.956 },
    sizeDivisor: 16,
  },
  fc_siam_diff: {
    name: "fc_siam_diff",
    title: "FC-Siam-Diff (Daudt et al. 2018)",
    create: (seed) => new FcSiam("diff", seed),
    outputs: 2,
    normalize: IMAGENET_NORM,
    recipe: { ...common, lr: 1e-3, weightDecay: 1e-2, lambda: 1e-4 },
    paper: { params: 1.352, flops: 17.540 },
    sizeDivisor: 16,
  },
  tinycd: {
    name: "tinycd",
    title: "TinyCD (Codegoni et al. 2023)",
    create: (seed) => new TinyCD(seed),
    outputs: 1,
    normalize: IMAGENET_NORM,
    // The paper's LR; weight decay as the TinyCD authors' training script.
    recipe: { ...common, lr: 3.57e-3, weightDecay: 9.45e-3, lambda: 1e-5 },
    paper: { params: 0.285, flops: 5.791 },
    sizeDivisor: 16,
  },
  snunet_c16: {
    name: "snunet_c16",
    title: "SNUNet-CD/ECAM, 16 channels (Fang et al. 2021)",
    create: (seed) => new SNUNet(seed),
    outputs: 2,
    normalize: IMAGENET_NORM,
    // The paper's LR; weight decay as Open-CD's standard schedule.
    recipe: { ...common, lr: 1e-3, weightDecay: 5e-2, lambda: 1e-4 },
    paper: { params: 3.012, flops: 46.921 },
    sizeDivisor: 16,
  },
  // The transformer detectors as Open-CD builds them, with the paper's configs
  // (configs/{bit,changeformer,changer}/*_512x512_200k_cgwx.py of MTKD-CD): AdamW β (0.9, 0.999)
  // there, not the CNN rows' 0.99. The configs start MiT-b0 / ResNetV1c-18 from ImageNet
  // weights, which cannot be downloaded here: `train --pretrained FILE` loads them.
  bit_r18: {
    name: "bit_r18",
    title: "BIT, ResNet-18 (Chen et al. 2021), as Open-CD builds it",
    create: (seed) => createBit(seed),
    outputs: 2,
    normalize: IMAGENET_NORM,
    recipe: { ...opencd, lr: 1e-3, weightDecay: 5e-2, lambda: 1e-4, augment: STANDARD_ROTATE },
    paper: { params: 2.990, flops: 34.996 },
    sizeDivisor: 8,
  },
  changeformer_mit_b0: {
    name: "changeformer_mit_b0",
    title: "ChangeFormer, MiT-b0 (Open-CD's Siamese SegFormer)",
    create: (seed) => createChangeFormer(seed),
    outputs: 2,
    normalize: IMAGENET_NORM,
    recipe: {
      ...opencd,
      lr: 6e-5,
      weightDecay: 1e-2,
      lambda: 1e-3,
      paramwise: SEGFORMER_KEYS,
      augment: STANDARD_ROTATE,
    },
    paper: { params: 3.847, flops: 11.380 },
    sizeDivisor: 32,
    minSize: 64,
  },
  changeformer_mit_b1: {
    name: "changeformer_mit_b1",
    title: "ChangeFormer, MiT-b1 (Open-CD's Siamese SegFormer)",
    create: (seed) => createChangeFormer(seed, "b1"),
    outputs: 2,
    normalize: IMAGENET_NORM,
    recipe: {
      ...opencd,
      lr: 6e-5,
      weightDecay: 1e-2,
      lambda: 5e-4,
      paramwise: SEGFORMER_KEYS,
      augment: STANDARD_ROTATE,
    },
    paper: { params: 13.941, flops: 26.422 },
    sizeDivisor: 32,
    minSize: 64,
  },
  changer_ex_mit_b0: {
    name: "changer_ex_mit_b0",
    title: "ChangerEx, MiT-b0 (Fang et al. 2023), as Open-CD builds it",
    create: (seed) => createChangerEx(seed),
    outputs: 2,
    normalize: IMAGENET_NORM,
    recipe: {
      ...opencd,
      lr: 1e-4,
      weightDecay: 1e-2,
      lambda: 1e-4,
      paramwise: SEGFORMER_KEYS,
      loss: { ohem: { thresh: 0.7, minKept: 100_000 } },
      // MultiImgRandomRotFlip(rotate 0.5, flip 0.5, ±20°) and MultiImgExchangeTime(0.5).
      augment: { rotateProb: 0.5, rotateDegrees: 20, rotFlipProb: 0.5, swapProb: 0.5 },
    },
    paper: { params: 3.457, flops: 8.523 },
    sizeDivisor: 32,
    minSize: 64,
  },
  // IFN as Open-CD builds it (configs/ifn/ifn_512x512_200k_cgwx.py: the standard schedule,
  // AdamW lr 1e-3, β (0.9, 0.999), weight decay 0.05). Its VGG-16 encoder is ImageNet's upstream
  // (`vgg16(pretrained=True)`, `train --pretrained FILE` here) and is never trained.
  ifn_vgg16: {
    name: "ifn_vgg16",
    title: "IFN, VGG-16 (Zhang et al. 2020), as Open-CD builds it",
    create: (seed) => new Ifn(seed),
    outputs: 1,
    normalize: IMAGENET_NORM,
    recipe: {
      ...opencd,
      lr: 1e-3,
      weightDecay: 5e-2,
      lambda: 1e-4,
      augment: STANDARD_ROTATE,
      // The encoder runs under no_grad; ca1, bn_ca1 and bn_ca2 are built but never called.
      frozen: ["backbone.encoder1.", "backbone.ca1.", "backbone.bn_ca1.", "backbone.bn_ca2."],
    },
    paper: { params: 35.995, flops: 323.584 },
    sizeDivisor: 16,
    // mmseg's default for a 1-channel head whose config sets none.
    threshold: 0.3,
  },
  // CGNet as Open-CD builds it (configs/cgnet/cgnet_512x512_200k_cgwx.py: AdamW lr 5e-4,
  // β (0.9, 0.999), weight decay 0.0025, the standard pipeline). The config starts VGG-16-BN
  // from ImageNet weights (`train --pretrained FILE` here).
  cgnet_vgg16: {
    name: "cgnet_vgg16",
    title: "CGNet, VGG-16-BN (Han et al. 2023), as Open-CD builds it",
    create: (seed) => new Cgnet(seed),
    outputs: 1,
    normalize: IMAGENET_NORM,
    recipe: {
      ...opencd,
      lr: 5e-4,
      weightDecay: 2.5e-3,
      lambda: 1e-3,
      augment: STANDARD_ROTATE,
      // up_layer2/3/4 are built but never called.
      frozen: ["backbone.up_layer"],
    },
    paper: { params: 38.989, flops: 425.984 },
    sizeDivisor: 16,
  },
};

export function modelEntry(name: string): ModelEntry {
  const e = MODELS[name];
  if (!e) {
    throw new Error(`unknown model "${name}": choose one of ${Object.keys(MODELS).join(", ")}`);
  }
  return e;
}

/** Multiply-accumulates of one forward pass at size×size (conv, transposed conv, matmul and
 * attention products), counted by a dry run at that size: no kernel runs, so this is cheap even
 * where attention makes the cost grow faster than the pixel count. */
export function measureMacs(model: ChangeDetector, size = 512): number {
  const was = model.training;
  model.eval();
  const macs = scope(() =>
    noGrad(() =>
      countMacs(() => {
        model.forward(zeros([1, 3, size, size]), zeros([1, 3, size, size]));
      }, { dry: true })
    )
  );
  model.train(was);
  return macs;
}
