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
import { createChangeStar } from "./changestar.ts";
import { createStanet } from "./stanet.ts";
import { FcSiam } from "./fc_siam.ts";
import { createHANet } from "./hanet.ts";
import { createLightCDNet } from "./lightcdnet.ts";
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
  /** Pairs per step when --batch is not given (Table II: 8 unless this says otherwise). */
  batch?: number;
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
  /** Smallest training batch (default 1): a BatchNorm in training needs more than one value
   * per channel, as in PyTorch, and some see one value per image (UPerNet's 1×1 PPM level,
   * LightCDNet's TimeAttention, ResNeSt's split attention on a pooled [B, C, 1, 1]). */
  minBatch?: number;
  /** State_dict prefixes of training-only modules (an auxiliary head): counted in the
   * parameters, left out of Table II's figure, never run at inference. */
  trainingOnly?: string[];
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
/** Changer's pipeline: MultiImgRandomRotFlip(rotate 0.5, flip 0.5, ±20°), MultiImgExchangeTime(0.5). */
const CHANGER_AUGMENT = { rotateProb: 0.5, rotateDegrees: 20, rotFlipProb: 0.5, swapProb: 0.5 };
/** mmseg's OHEMPixelSampler as the configs set it: threshold 0.7, at least 100,000 pixels kept. */
const OHEM_LOSS = { ohem: { thresh: 0.7, minKept: 100_000 } };
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
      loss: OHEM_LOSS,
      augment: CHANGER_AUGMENT,
    },
    paper: { params: 3.457, flops: 8.523 },
    sizeDivisor: 32,
    minSize: 64,
  },
  lightcdnet_s: {
    name: "lightcdnet_s",
    title: "LightCDNet-s (Xing et al. 2023), as Open-CD builds it",
    create: (seed) => createLightCDNet(seed),
    outputs: 2,
    normalize: IMAGENET_NORM,
    // Config lightcdnet_s_512x512_200k_cgwx.py: AdamW 3e-3, betas (0.9, 0.999), decay 0.05,
    // decode CE with OHEM (0.7, 100000); its auxiliary head's 0.4 × CE is the model's auxLoss.
    recipe: {
      ...opencd,
      lr: 3e-3,
      weightDecay: 5e-2,
      lambda: 5e-3,
      loss: OHEM_LOSS,
      augment: STANDARD_ROTATE,
    },
    // Table II's 0.342 M leaves out the training-only auxiliary head (5,282 parameters).
    paper: { params: 0.342, flops: 6.995 },
    sizeDivisor: 32,
    minBatch: 2,
    trainingOnly: ["auxiliary_head."],
  },
  hanet: {
    name: "hanet",
    title: "HANet (Han et al. 2023), as Open-CD builds it",
    create: (seed) => createHANet(seed),
    outputs: 2,
    normalize: IMAGENET_NORM,
    // Config hanet_512x512_200k_cgwx.py: the standard cgwx schedule's AdamW 1e-3, betas
    // (0.9, 0.999), decay 0.05; plain CE.
    recipe: { ...opencd, lr: 1e-3, weightDecay: 5e-2, lambda: 1e-3, augment: STANDARD_ROTATE },
    paper: { params: 3.028, flops: 97.548 },
    sizeDivisor: 8,
  },
  // STANet-Base (configs/stanet/stanet_base_512x512_200k_cgwx.py): the standard Open-CD schedule
  // (AdamW 1e-3, β (0.9, 0.999), weight decay 0.05). Logits are its ±100 decision; it trains
  // BCL on the distance map (models/stanet.ts).
  stanet_base_r18: {
    name: "stanet_base_r18",
    title: "STANet-Base, ResNet-18 (Chen & Shi 2020), as Open-CD builds it",
    create: (seed) => createStanet(seed),
    outputs: 1,
    normalize: IMAGENET_NORM,
    recipe: { ...opencd, lr: 1e-3, weightDecay: 5e-2, lambda: 5e-3, augment: STANDARD_ROTATE },
    paper: { params: 12.764, flops: 70.311 },
    sizeDivisor: 32,
    // ResNet's 1/32 level must keep 2×2 positions for its BatchNorms at batch 1.
    minSize: 64,
  },
  // ChangeStar 1x96 (configs/changestar/*_cgwx.py): UPerNet keeps the standard schedule
  // (weight decay 0.05, batch 8); FarSeg's config sets weight decay 0.01 and batch 16.
  changestar_upernet_r18: {
    name: "changestar_upernet_r18",
    title: "ChangeStar 1x96, UPerNet ResNet-18 (Zheng et al. 2021), as Open-CD builds it",
    create: (seed) => createChangeStar(seed, "upernet"),
    outputs: 1,
    normalize: IMAGENET_NORM,
    recipe: { ...opencd, lr: 1e-3, weightDecay: 5e-2, lambda: 1e-4, augment: STANDARD_ROTATE },
    paper: { params: 13.952, flops: 55.634 },
    sizeDivisor: 32,
    minSize: 64,
    minBatch: 2,
  },
  changestar_farseg_r18: {
    name: "changestar_farseg_r18",
    title: "ChangeStar 1x96, FarSeg ResNet-18 (Zheng et al. 2021), as Open-CD builds it",
    create: (seed) => createChangeStar(seed, "farseg"),
    outputs: 1,
    normalize: IMAGENET_NORM,
    recipe: {
      ...opencd,
      lr: 1e-3,
      weightDecay: 1e-2,
      lambda: 1e-3,
      augment: STANDARD_ROTATE,
      batch: 16,
    },
    paper: { params: 16.965, flops: 76.845 },
    sizeDivisor: 32,
    minSize: 64,
  },
  // changer_ex_mit-b1 inherits the b0 config (starting from ImageNet MiT-b1 weights): the
  // same optimiser, paramwise keys, OHEM and pipeline; Table II's λ is 1e-3.
  changer_ex_mit_b1: {
    name: "changer_ex_mit_b1",
    title: "ChangerEx, MiT-b1 (Fang et al. 2023), as Open-CD builds it",
    create: (seed) => createChangerEx(seed, "mit_b1"),
    outputs: 2,
    normalize: IMAGENET_NORM,
    recipe: {
      ...opencd,
      lr: 1e-4,
      weightDecay: 1e-2,
      lambda: 1e-3,
      paramwise: SEGFORMER_KEYS,
      loss: OHEM_LOSS,
      augment: CHANGER_AUGMENT,
    },
    paper: { params: 13.355, flops: 23.306 },
    sizeDivisor: 32,
    minSize: 64,
  },
  // changer_ex_r18 / _s50: trained from scratch (pretrained None), AdamW lr 5e-3, weight decay
  // 0.05, no paramwise keys; OHEM and the Changer pipeline as b0.
  changer_ex_r18: {
    name: "changer_ex_r18",
    title: "ChangerEx, ResNetV1c-18 (Fang et al. 2023), as Open-CD builds it",
    create: (seed) => createChangerEx(seed, "r18"),
    outputs: 2,
    normalize: IMAGENET_NORM,
    recipe: {
      ...opencd,
      lr: 5e-3,
      weightDecay: 5e-2,
      lambda: 1e-3,
      loss: OHEM_LOSS,
      augment: CHANGER_AUGMENT,
    },
    paper: { params: 11.391, flops: 23.820 },
    sizeDivisor: 32,
    minSize: 64,
  },
  changer_ex_s50: {
    name: "changer_ex_s50",
    title: "ChangerEx, ResNeSt-50 (Fang et al. 2023), as Open-CD builds it",
    create: (seed) => createChangerEx(seed, "s50"),
    outputs: 2,
    normalize: IMAGENET_NORM,
    recipe: {
      ...opencd,
      lr: 5e-3,
      weightDecay: 5e-2,
      lambda: 1e-5,
      loss: OHEM_LOSS,
      augment: CHANGER_AUGMENT,
    },
    paper: { params: 26.693, flops: 67.241 },
    sizeDivisor: 32,
    // Batch ≥ 2 also gives the head's BN two values at a 1×1 deepest level: 32² suffices.
    minBatch: 2,
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
