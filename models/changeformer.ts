// "ChangeFormer" as Open-CD and the JL1-CD paper define it (configs/changeformer/
// changeformer_mit-b0_512x512_200k_cgwx.py): a Siamese SegFormer-b0, not wgcban's ChangeFormerV6.
// SiamEncoderDecoder: one MiT-b0 encodes A and B (here as one batch); FeatureFusionNeck "concat" joins each level
// (A's channels first); SegformerHead (channels 256) decodes at 1/4, and the logits are resized
// bilinearly (align_corners False) to the input size. Names follow Open-CD's state_dict
// (backbone.*, decode_head.*).

import { concat, permute, slice } from "../engine/ops/layout.ts";
import { reshape } from "../engine/ops/shape.ts";
import { Module } from "../engine/nn/module.ts";
import { interpolate } from "../engine/ops/resample.ts";
import { Random } from "../engine/random.ts";
import type { Tensor } from "../engine/tensor.ts";
import { MIT_B0, MIT_B1, type MitConfig, MixVisionTransformer } from "./mit.ts";
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
    // Both dates go through the backbone as one batch of 2B: MiT normalises per token (no batch
    // statistics), so this equals encoding A, then B, with half the dispatches and no summing
    // of two gradient contributions per weight.
    const n = a.shape[0];
    const feats = this.backbone.forward(concat([a, b], 0));
    if (tap) feats.forEach((t, i) => tap(`feat.s${i + 1}`, slice(t, 0, 0, n)));
    const head = this.decodeHead.forward(feats.map((t) => datesToChannels(t, n)));
    tap?.("head", head);
    const size = [a.shape[2], a.shape[3]] as const;
    return interpolate(head, { size, mode: "bilinear", alignCorners: false });
  }
}

/** [2B, C, H, W] (A's B images, then B's) → [B, 2C, H, W] with A's channels first: the neck's
 * concat of the two dates, as one permute. */
function datesToChannels(t: Tensor, n: number): Tensor {
  const [, c, h, w] = t.shape;
  const pairs = permute(reshape(t, [2, n, c * h * w]), [1, 0, 2]);
  return reshape(pairs, [n, 2 * c, h, w]);
}

/** Open-CD's ChangeFormer (MiT-b0, or b1 with `variant`) with seeded from-scratch
 * initialisation. */
export function createChangeFormer(seed = 0, variant: "b0" | "b1" = "b0"): ChangeFormer {
  return new ChangeFormer(seed, variant === "b1" ? MIT_B1 : MIT_B0);
}
