// "ChangeFormer" as Open-CD and the JL1-CD paper define it (configs/changeformer/
// changeformer_mit-b0_512x512_200k_cgwx.py): a Siamese SegFormer-b0, not wgcban's ChangeFormerV6.
// SiamEncoderDecoder: one MiT-b0 encodes A, then B; FeatureFusionNeck "concat" joins each level
// (A's channels first); SegformerHead (channels 256) decodes at 1/4, and the logits are resized
// bilinearly (align_corners False) to the input size. Names follow Open-CD's state_dict
// (backbone.*, decode_head.*).

import { concat } from "../engine/ops/layout.ts";
import { Module } from "../engine/nn/module.ts";
import { interpolate } from "../engine/ops/resample.ts";
import { Random } from "../engine/random.ts";
import type { Tensor } from "../engine/tensor.ts";
import { MIT_B0, type MitConfig, MixVisionTransformer } from "./mit.ts";
import type { ChangeDetector, Tap } from "./model.ts";
import { SegformerHead } from "./segformer_head.ts";

export class ChangeFormer extends Module implements ChangeDetector {
  readonly backbone: MixVisionTransformer;
  readonly decodeHead: SegformerHead;

  constructor(seed = 0, cfg: MitConfig = MIT_B0, channels = 256, classes = 2) {
    super();
    this.backbone = this.child("backbone", new MixVisionTransformer(cfg, seed));
    // The head draws from its own stream, so the backbone's weights do not depend on it.
    const rng = new Random((seed ^ 0x5f3759df) >>> 0);
    this.decodeHead = this.child(
      "decode_head",
      new SegformerHead(cfg.embedDims.map((c) => 2 * c), channels, classes, rng),
    );
  }

  /** Taps: "feat.s1".."feat.s4" (A's stage outputs), "head" (logits before the resize). */
  forward(a: Tensor, b: Tensor, tap?: Tap): Tensor {
    const fa = this.backbone.forward(a);
    fa.forEach((t, i) => tap?.(`feat.s${i + 1}`, t));
    const fb = this.backbone.forward(b);
    const head = this.decodeHead.forward(fa.map((t, i) => concat([t, fb[i]], 1)));
    tap?.("head", head);
    const size = [a.shape[2], a.shape[3]] as const;
    return interpolate(head, { size, mode: "bilinear", alignCorners: false });
  }
}

/** Open-CD's ChangeFormer (MiT-b0) with seeded from-scratch initialisation. */
export function createChangeFormer(seed = 0): ChangeFormer {
  return new ChangeFormer(seed);
}
