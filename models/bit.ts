// BIT (Chen, Qi, Shi, TGRS 2021) as Open-CD builds it for the JL1-CD paper (bit_r18 config):
// SiamEncoderDecoder + mmseg ResNetV1c-18 cut to 3 stages (strides 1, 2, 1 → 256 channels at
// 1/8), a concat neck and Open-CD's BITHead:
//
//   per date:  x = ReLU(conv3×3(up×2(feat)))                    [32, H/4, W/4]  (pre_process)
//              a = softmax over positions of ReLU(conv1×1(x))    [4, HW]         (tokenizer)
//              tokens = a · xᵀ                                   [4, 32]
//   encoder:   1 block over the 8 tokens of both dates, plus a learnt position embedding
//   decoder:   8 blocks; each pixel of a date queries that date's 4 tokens (shared weights)
//   output:    conv1×1(up×4(|x_A − x_B|)) → 2 logits at the input size
//
// Blocks are post-residual with LayerNorm'd inputs: x' = x + Attn(LN1(x), LN(kv)); y = x' +
// FF(LN2(x')). Attention has 8 heads of 8 (q, k, v Linear 32→64 without bias) and, as upstream,
// the scale 32^−0.5 of the input width, not the head size. Both dates run batched through the
// head (the same weights serve both); the backbone runs them separately as upstream does, so
// BatchNorm's training statistics are per date. Names follow Open-CD's state_dict.
// Parity: tests/models/bit_test.ts against ../shared/fixtures (README "bit_r18_seed0").

import { Conv2d } from "../engine/nn/conv.ts";
import { Dropout2d } from "../engine/nn/dropout.ts";
import { Linear } from "../engine/nn/linear.ts";
import { Module, ModuleList } from "../engine/nn/module.ts";
import { LayerNorm } from "../engine/nn/norm.ts";
import { attention } from "../engine/ops/attention.ts";
import { add } from "../engine/ops/elementwise.ts";
import { absDiff, concat, permute, slice } from "../engine/ops/layout.ts";
import { interpolate } from "../engine/ops/resample.ts";
import { reshape } from "../engine/ops/shape.ts";
import { softmax } from "../engine/ops/softmax.ts";
import { matmul } from "../engine/ops/matmul.ts";
import { Random } from "../engine/random.ts";
import { parameter, type Tensor, write } from "../engine/tensor.ts";
import type { ChangeDetector, Tap } from "./model.ts";
import { kaimingFanOut } from "./init.ts";
import { ResNet } from "./resnet.ts";

/** The bit_r18 head configuration (MTKD-CD configs/_base_/models/bit_r18.py). */
export interface BitHeadConfig {
  inChannels: number;
  channels: number;
  embedDims: number;
  numHeads: number;
  encDepth: number;
  decDepth: number;
  tokenLen: number;
  preUpsample: number;
  upsample: number;
  classes: number;
  /** mmseg BaseDecodeHead's Dropout2d before conv_seg (dropout_ratio default 0.1). */
  dropout: number;
}

export const BIT_R18_HEAD: BitHeadConfig = {
  inChannels: 256,
  channels: 32,
  embedDims: 64,
  numHeads: 8,
  encDepth: 1,
  decDepth: 8,
  tokenLen: 4,
  preUpsample: 2,
  upsample: 4,
  classes: 2,
  dropout: 0.1,
};

/** mmseg's Upsample: bilinear (align_corners False) to int(size · factor). */
function upsample(x: Tensor, factor: number): Tensor {
  const [h, w] = x.shape.slice(-2);
  return interpolate(x, {
    size: [Math.floor(h * factor), Math.floor(w * factor)],
    mode: "bilinear",
  });
}

/** Split the last axis into heads: [N, L, h·d] → [N, h, L, d]. */
function toHeads(x: Tensor, heads: number): Tensor {
  const [n, l, c] = x.shape;
  return permute(reshape(x, [n, l, heads, c / heads]), [0, 2, 1, 3]);
}

/** Open-CD's CrossAttention: softmax(q·kᵀ · in_dims^−0.5)·v per head, heads concatenated, then
 * fc_out (Linear + Dropout(drop_rate 0), named fc_out.0). */
class CrossAttention extends Module {
  readonly #toQ: Linear;
  readonly #toK: Linear;
  readonly #toV: Linear;
  readonly #out: Linear;
  readonly #scale: number;
  constructor(inDims: number, embedDims: number, readonly heads: number, rng: Random) {
    super();
    this.#scale = inDims ** -0.5;
    this.#toQ = this.child("to_q", new Linear(inDims, embedDims, rng, false));
    this.#toK = this.child("to_k", new Linear(inDims, embedDims, rng, false));
    this.#toV = this.child("to_v", new Linear(inDims, embedDims, rng, false));
    const fcOut = this.child("fc_out", new ModuleList([new Linear(embedDims, inDims, rng)]));
    this.#out = fcOut.items[0];
  }
  /** x [N, L, C] queries ref [N, Lk, C] → [N, L, C]. Two per-pixel intermediates go once
   * their forward readers are done (Tensor.evict): the queries before the head split (no
   * backward rule reads them: never written again) and the heads merged back (fc_out's weight
   * gradient reads them: one copy again from the attention output, which attention keeps). */
  forward(x: Tensor, ref: Tensor): Tensor {
    const h = this.heads;
    const flatQ = this.#toQ.forward(x);
    const q = toHeads(flatQ, h);
    flatQ.evict();
    const k = toHeads(this.#toK.forward(ref), h);
    const v = toHeads(this.#toV.forward(ref), h);
    const o = permute(attention(q, k, v, { scale: this.#scale }), [0, 2, 1, 3]);
    const [n, l] = x.shape;
    const y = this.#out.forward(reshape(o, [n, l, o.shape[2] * o.shape[3]]));
    o.evict();
    return y;
  }
}

/** Linear → ReLU → Dropout(0) → Linear → Dropout(0), named ff.0 and ff.3. */
class FeedForward extends Module {
  readonly #fc1: Linear;
  readonly #fc2: Linear;
  constructor(dim: number, hidden: number, rng: Random) {
    super();
    this.#fc1 = this.child("0", new Linear(dim, hidden, rng));
    this.#fc2 = this.child("3", new Linear(hidden, dim, rng));
  }
  /** The hidden ReLU output goes once fc2 has read it (Tensor.evict): fc2's weight gradient
   * and the ReLU's own rule get it written again (the 32→64 product, from `x`), and fc2's
   * output, which only a residual sum reads, is the caller's to let go. */
  forward(x: Tensor): Tensor {
    const hidden = this.#fc1.forward(x, "relu");
    const y = this.#fc2.forward(hidden);
    hidden.evict();
    return y;
  }
}

/** Encoder block (self-attention) or, with `crossNorm`, decoder block whose keys and values are
 * the tokens normalised by their own LayerNorm (norm1_). */
class TransformerBlock extends Module {
  readonly #attn: CrossAttention;
  readonly #ff: FeedForward;
  readonly #norm1: LayerNorm;
  readonly #norm1Ref: LayerNorm | null;
  readonly #norm2: LayerNorm;
  constructor(cfg: BitHeadConfig, crossNorm: boolean, rng: Random) {
    super();
    const c = cfg.channels;
    this.#attn = this.child("attn", new CrossAttention(c, cfg.embedDims, cfg.numHeads, rng));
    this.#ff = this.child("ff", new FeedForward(c, cfg.embedDims, rng));
    this.#norm1 = this.child("norm1", new LayerNorm(c, 1e-5));
    this.#norm1Ref = crossNorm ? this.child("norm1_", new LayerNorm(c, 1e-5)) : null;
    this.#norm2 = this.child("norm2", new LayerNorm(c, 1e-5));
  }
  /** Of the per-pixel tensors, only the residual stream (x, x1, the output) and what attention
   * keeps (its queries and output) stay after the forward (Tensor.evict): the LayerNorm outputs
   * come back from x and x1 for the projections' weight gradients (one normalisation pass
   * each), the attention and FFN outputs, which only the residual sums read, never do. */
  forward(x: Tensor, ref?: Tensor): Tensor {
    const q = this.#norm1.forward(x);
    const kv = this.#norm1Ref && ref ? this.#norm1Ref.forward(ref) : q;
    const attended = this.#attn.forward(q, kv);
    q.evict();
    const x1 = add(attended, x);
    attended.evict();
    const normed = this.#norm2.forward(x1);
    const fed = this.#ff.forward(normed);
    normed.evict();
    const y = add(fed, x1);
    fed.evict();
    return y;
  }
}

/** mmcv ConvModule without norm: conv (with bias) + ReLU, named `conv`; kaiming-initialised at
 * construction as ConvModule.init_weights does. */
class ConvRelu extends Module {
  readonly conv: Conv2d;
  constructor(cin: number, cout: number, kernel: number, rng: Random) {
    super();
    const padding = (kernel - 1) / 2;
    this.conv = this.child(
      "conv",
      kaimingFanOut(new Conv2d(cin, cout, { kernel, padding }, rng), rng),
    );
  }
  forward(x: Tensor): Tensor {
    return this.conv.forward(x, "relu");
  }
}

/** pre_process = Sequential(Upsample (no weights), ConvModule 3×3): the conv is child "1". */
class PreProcess extends Module {
  readonly conv: ConvRelu;
  constructor(cin: number, cout: number, rng: Random) {
    super();
    this.conv = this.child("1", new ConvRelu(cin, cout, 3, rng));
  }
}

/** Open-CD's BITHead on the features of both dates stacked on the batch axis ([2B, C, h, w],
 * A's first). */
export class BitHead extends Module {
  readonly #pre: ConvRelu;
  readonly #convAtt: ConvRelu;
  readonly #pos: Tensor;
  readonly #encoder: TransformerBlock[];
  readonly #decoder: TransformerBlock[];
  readonly #dropout: Dropout2d;
  readonly #convSeg: Conv2d;

  constructor(readonly cfg: BitHeadConfig, rng: Random) {
    super();
    const c = cfg.channels;
    this.#convSeg = this.child("conv_seg", new Conv2d(c, cfg.classes, { kernel: 1 }, rng));
    // mmseg BaseDecodeHead's init_cfg: conv_seg ~ N(0, 0.01), bias 0.
    write(this.#convSeg.weight, rng.normal(this.#convSeg.weight.size, 0.01));
    write(this.#convSeg.bias!, new Float32Array(cfg.classes));
    this.#dropout = this.child("dropout", new Dropout2d(cfg.dropout));
    this.#convAtt = this.child("conv_att", new ConvRelu(c, cfg.tokenLen, 1, rng));
    // nn.Parameter(torch.randn(1, 2·token_len, channels)).
    const posShape = [1, 2 * cfg.tokenLen, c];
    this.#pos = this.param(
      "enc_pos_embedding",
      parameter(rng.normal(posShape[1] * c), posShape, "enc_pos_embedding"),
    );
    this.#pre = this.child("pre_process", new PreProcess(cfg.inChannels, c, rng)).conv;
    const blocks = (n: number, cross: boolean) =>
      Array.from({ length: n }, () => new TransformerBlock(cfg, cross, rng));
    this.#encoder = this.child("encoder", new ModuleList(blocks(cfg.encDepth, false))).items;
    this.#decoder = this.child("decoder", new ModuleList(blocks(cfg.decDepth, true))).items;
  }

  /** feats [2B, C, h, w] → logits [B, classes, h·pre·up, w·pre·up] (pre_upsample 2,
   * upsample 4 in bit_r18). */
  forward(feats: Tensor, tap?: Tap): Tensor {
    const cfg = this.cfg;
    const n = feats.shape[0], b = n / 2;
    // The upsampled features (8× the backbone's output) go once the conv has read them: its
    // weight gradient gets them resampled again (Tensor.evict).
    const up = upsample(feats, cfg.preUpsample);
    const x = this.#pre.forward(up);
    up.evict();
    tap?.("pre", slice(x, 0, 0, b));
    const [c, h, w] = [x.shape[1], x.shape[2], x.shape[3]];

    // Tokenizer: a softmax over all h·w positions per token, tokens = attention-weighted sums.
    const att = this.#convAtt.forward(x);
    tap?.("att", slice(att, 0, 0, b));
    const a = softmax(reshape(att, [n, cfg.tokenLen, h * w]), -1);
    const pixels = reshape(x, [n, c, h * w]);
    const tokens = matmul(a, pixels, { transB: true }); // [2B, L, C]

    // Encoder over both dates' tokens per sample: [B, 2L, C], A's rows first.
    let t = add(concat([slice(tokens, 0, 0, b), slice(tokens, 0, b, n)], 1), this.#pos);
    for (const blk of this.#encoder) t = blk.forward(t);
    tap?.("tok", t);
    const L = cfg.tokenLen;
    const kv = concat([slice(t, 1, 0, L), slice(t, 1, L, 2 * L)], 0); // [2B, L, C]

    // Decoder: every pixel queries its date's tokens.
    let q = reshape(permute(x, [0, 2, 3, 1]), [n, h * w, c]);
    for (const blk of this.#decoder) q = blk.forward(q, kv);
    const y = permute(reshape(q, [n, h, w, c]), [0, 3, 1, 2]);

    const d = absDiff(slice(y, 0, 0, b), slice(y, 0, b, n));
    // The ×4 upsampled difference is read by no backward rule once dropout has a copy (which
    // conv_seg's weight gradient reads): it goes after the forward, never written again.
    const big = upsample(d, cfg.upsample);
    const dropped = this.#dropout.forward(big);
    const logits = this.#convSeg.forward(dropped);
    if (dropped !== big) big.evict();
    return logits;
  }
}

/** BIT-R18 change detector: 2-channel logits (softmax form) at the input size. */
export class BIT extends Module implements ChangeDetector {
  readonly backbone: ResNet;
  readonly head: BitHead;
  constructor(seed = 0) {
    super();
    const rng = new Random(seed);
    this.backbone = this.child(
      "backbone",
      new ResNet({
        depth: 18,
        numStages: 3,
        strides: [1, 2, 1],
        dilations: [1, 1, 1],
        outIndices: [2],
        deepStem: true,
        contractDilation: true,
      }, rng),
    );
    this.head = this.child("decode_head", new BitHead(BIT_R18_HEAD, rng));
  }

  forward(a: Tensor, b: Tensor, tap?: Tap): Tensor {
    const [h, w] = [a.shape[2], a.shape[3]];
    if (h % 8 || w % 8) throw new Error(`BIT needs H and W divisible by 8, got ${h}×${w}`);
    // Separate backbone passes, as Open-CD's SiamEncoderDecoder (per-date BN statistics).
    const [fa] = this.backbone.forward(a);
    const [fb] = this.backbone.forward(b);
    tap?.("feat", fa);
    // The head ends at 8·(H/8) = H, so mmseg's final resize to the input is an identity.
    return this.head.forward(concat([fa, fb], 0), tap);
  }
}

export function createBit(seed = 0): BIT {
  return new BIT(seed);
}
