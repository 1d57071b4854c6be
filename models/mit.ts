// Mix Vision Transformer (SegFormer's encoder, Xie et al. 2021) as mmseg v1.2.2 builds it
// (mmseg/models/backbones/mit.py), the backbone of Open-CD's "ChangeFormer" and ChangerEx. Each
// stage: an overlapping patch embedding (strided conv + LN), pre-norm blocks of efficient
// attention (keys and values from a sequence shrunk by an sr×sr strided conv) and Mix-FFN
// (1×1 conv, 3×3 depthwise conv, GELU, 1×1 conv), then a final LN. Tokens are [B, N, C] with
// n = h·W + w, as upstream's nchw_to_nlc. Names follow the mmseg state_dict
// (layers.{i}.0 patch embed, layers.{i}.1.{j} blocks, layers.{i}.2 final norm).

import { Conv2d } from "../engine/nn/conv.ts";
import { StochasticDepth } from "../engine/nn/dropout.ts";
import { Linear } from "../engine/nn/linear.ts";
import { Module, ModuleList } from "../engine/nn/module.ts";
import { LayerNorm } from "../engine/nn/norm.ts";
import { gelu } from "../engine/ops/activation.ts";
import { attention } from "../engine/ops/attention.ts";
import { add } from "../engine/ops/elementwise.ts";
import { permute, slice } from "../engine/ops/layout.ts";
import { matmul } from "../engine/ops/matmul.ts";
import { reshape } from "../engine/ops/shape.ts";
import { Random } from "../engine/random.ts";
import { full, parameter, type Tensor, write } from "../engine/tensor.ts";

export interface MitConfig {
  embedDims: number[];
  heads: number[];
  depths: number[];
  srRatios: number[];
  patchSizes: number[];
  strides: number[];
  mlpRatio: number;
  dropPathRate: number;
}

/** MiT-b0: the configuration of Open-CD's changeformer_mit-b0 and changer_ex_mit-b0. */
export const MIT_B0: MitConfig = {
  embedDims: [32, 64, 160, 256],
  heads: [1, 2, 5, 8],
  depths: [2, 2, 2, 2],
  srRatios: [8, 4, 2, 1],
  patchSizes: [7, 3, 3, 3],
  strides: [4, 2, 2, 2],
  mlpRatio: 4,
  dropPathRate: 0.1,
};

/** MiT-b1: b0 with twice the widths (head width 64 in every stage); Open-CD's
 * changeformer_mit-b1 and changer_ex_mit-b1. */
export const MIT_B1: MitConfig = { ...MIT_B0, embedDims: [64, 128, 320, 512] };

/** mmseg's MiT uses LayerNorm eps 1e-6 everywhere (norm_cfg = LN, eps 1e-6). */
const LN_EPS = 1e-6;

// ---- mmseg MixVisionTransformer.init_weights (init_cfg None: training from scratch) ----

/** trunc_normal_(std) on [−2, 2] (mmcv's absolute bounds), by rejection. */
function truncNormal(rng: Random, n: number, std: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let v: number;
    do v = rng.normal(1, std)[0]; while (v < -2 || v > 2);
    out[i] = v;
  }
  return out;
}

/** Conv2d: normal(0, √(2 / fan_out)) with fan_out = k·k·out / groups, bias 0. */
function mitConv(conv: Conv2d, rng: Random): Conv2d {
  const [co, , kh, kw] = conv.weight.shape;
  const fanOut = (kh * kw * co) / (conv.config.groups ?? 1);
  write(conv.weight, rng.normal(conv.weight.size, Math.sqrt(2 / fanOut)));
  if (conv.bias) write(conv.bias, new Float32Array(conv.bias.size));
  return conv;
}

/** nn.Linear (out_proj included): trunc_normal(0.02), bias 0. */
function mitLinear(lin: Linear, rng: Random): Linear {
  write(lin.weight, truncNormal(rng, lin.weight.size, 0.02));
  if (lin.bias) write(lin.bias, new Float32Array(lin.bias.size));
  return lin;
}

const ln = (c: number) => new LayerNorm(c, LN_EPS);

// ---- token ↔ image layout ----

/** [B, N, C] tokens → [B, C, h, w]. */
export function tokensToNchw(x: Tensor, h: number, w: number): Tensor {
  const [b, , c] = x.shape;
  return reshape(permute(x, [0, 2, 1]), [b, c, h, w]);
}

/** [B, C, h, w] → [B, h·w, C] tokens. */
export function nchwToTokens(x: Tensor): Tensor {
  const [b, c, h, w] = x.shape;
  return permute(reshape(x, [b, c, h * w]), [0, 2, 1]);
}

// ---- modules ----

/** A bare container whose children keep upstream's names: the Mix-FFN convs under their
 * Sequential indices (the GELU and dropouts between them have no parameters), the stages. */
class Children extends Module {
  add<M extends Module>(name: string, m: M): M {
    return this.child(name, m);
  }
}

/** Overlapping patch embedding: conv (kernel k, stride s, padding k//2, bias) then LN on the
 * tokens. Returns tokens and the grid size. */
class PatchEmbed extends Module {
  readonly #proj: Conv2d;
  readonly #norm: LayerNorm;
  constructor(cin: number, cout: number, k: number, s: number, rng: Random) {
    super();
    const conv = new Conv2d(cin, cout, { kernel: k, stride: s, padding: k >> 1 }, rng);
    this.#proj = this.child("projection", mitConv(conv, rng));
    this.#norm = this.child("norm", ln(cout));
  }
  forward(x: Tensor): { tokens: Tensor; h: number; w: number } {
    const y = this.#proj.forward(x);
    const [h, w] = [y.shape[2], y.shape[3]];
    return { tokens: this.#norm.forward(nchwToTokens(y)), h, w };
  }
}

/** torch nn.MultiheadAttention (batch-first use): packed in_proj (rows q, then k, then v),
 * heads as contiguous channel slices, softmax(q·kᵀ/√d)·v, out_proj. PyTorch's own init:
 * xavier_uniform in_proj_weight, zero in_proj_bias; out_proj is an nn.Linear, so mmseg's
 * init_weights gives it trunc_normal(0.02) and a zero bias. */
class MultiheadAttention extends Module {
  readonly inProjWeight: Tensor;
  readonly inProjBias: Tensor;
  readonly #outProj: Linear;
  constructor(readonly dim: number, readonly heads: number, rng: Random) {
    super();
    if (dim % heads) throw new Error(`MultiheadAttention: ${dim} channels in ${heads} heads`);
    const bound = Math.sqrt(6 / (dim + 3 * dim));
    this.inProjWeight = this.param(
      "in_proj_weight",
      parameter(rng.uniform(3 * dim * dim, -bound, bound), [3 * dim, dim]),
    );
    this.inProjBias = this.param("in_proj_bias", full([3 * dim], 0));
    this.#outProj = this.child("out_proj", mitLinear(new Linear(dim, dim, rng), rng));
  }

  /** Projection j (0 q, 1 k, 2 v) of x [B, L, C] → [B, heads, L, d]. */
  #project(x: Tensor, j: number): Tensor {
    const c = this.dim;
    const y = matmul(x, slice(this.inProjWeight, 0, j * c, (j + 1) * c), {
      transB: true,
      bias: slice(this.inProjBias, 0, j * c, (j + 1) * c),
    });
    const [b, l] = x.shape;
    const d = c / this.heads;
    // One head: [B, L, d] is already [B, 1, L, d] in memory.
    if (this.heads === 1) return reshape(y, [b, 1, l, d]);
    // Split into heads, the projection (read by no backward rule) goes (Tensor.evict).
    const split = permute(reshape(y, [b, l, this.heads, d]), [0, 2, 1, 3]);
    y.evict();
    return split;
  }

  /** query [B, Lq, C], keyValue [B, Lk, C] → [B, Lq, C]. */
  forward(query: Tensor, keyValue: Tensor): Tensor {
    const [b, lq, c] = query.shape;
    const o = attention(
      this.#project(query, 0),
      this.#project(keyValue, 1),
      this.#project(keyValue, 2),
    );
    const merged = this.heads === 1
      ? reshape(o, [b, lq, c])
      : reshape(permute(o, [0, 2, 1, 3]), [b, lq, c]);
    const y = this.#outProj.forward(merged);
    // The heads merged back go once out_proj has read them: its weight gradient gets them
    // copied again from the attention output, which attention keeps (one head: the output
    // itself, kept).
    if (this.heads > 1) merged.evict();
    return y;
  }
}

/** mmseg EfficientMultiheadAttention: keys and values from the tokens shrunk by an sr×sr
 * stride-sr conv + LN when sr > 1, else from the tokens themselves. Returns the attention
 * output only (the block adds the residual). */
class EfficientAttention extends Module {
  readonly #sr: Conv2d | null = null;
  readonly #norm: LayerNorm | null = null;
  readonly #attn: MultiheadAttention;
  constructor(dim: number, heads: number, readonly srRatio: number, rng: Random) {
    super();
    this.#attn = this.child("attn", new MultiheadAttention(dim, heads, rng));
    if (srRatio > 1) {
      const conv = new Conv2d(dim, dim, { kernel: srRatio, stride: srRatio }, rng);
      this.#sr = this.child("sr", mitConv(conv, rng));
      this.#norm = this.child("norm", ln(dim));
    }
  }
  forward(x: Tensor, h: number, w: number): Tensor {
    if (!this.#sr) return this.#attn.forward(x, x);
    // The image-layout copy of the tokens goes once the reduction conv has read it: its weight
    // gradient gets it copied again (Tensor.evict).
    const grid = tokensToNchw(x, h, w);
    const reduced = this.#sr.forward(grid);
    grid.evict();
    return this.#attn.forward(x, this.#norm!.forward(nchwToTokens(reduced)));
  }
}

/** Mix-FFN's convs on NCHW, as upstream's Sequential: 1×1 conv C→hidden (child 0), 3×3
 * depthwise conv (1), GELU, 1×1 conv hidden→C (4); the GELU and dropouts between hold the
 * other indices and have no weights. `init` runs on each conv as it is made (MiT's rule; Changer's
 * discriminator keeps PyTorch's defaults). Shared by MiT and Changer's discriminator. */
export class MixFfnConvs extends Module {
  readonly fc1: Conv2d;
  readonly pe: Conv2d;
  readonly fc2: Conv2d;
  constructor(dim: number, hidden: number, rng: Random, init = (c: Conv2d) => c) {
    super();
    this.fc1 = this.child("0", init(new Conv2d(dim, hidden, { kernel: 1 }, rng)));
    const dw = { kernel: 3, padding: 1, groups: hidden };
    this.pe = this.child("1", init(new Conv2d(hidden, hidden, dw, rng)));
    this.fc2 = this.child("4", init(new Conv2d(hidden, dim, { kernel: 1 }, rng)));
  }
  /** The GELU output, as wide as the hidden layer, is evicted (Tensor.evict) once fc2 has read
   * it: fc2's weight gradient gets it written again from the depthwise conv's output, which
   * GELU's backward keeps anyway (one pointwise pass per block). */
  forward(x: Tensor): Tensor {
    const h = gelu(this.pe.forward(this.fc1.forward(x)));
    const y = this.fc2.forward(h);
    h.evict();
    return y;
  }
}

/** Mix-FFN on tokens: the convs above on the token grid. */
class MixFFN extends Module {
  readonly #layers: MixFfnConvs;
  constructor(dim: number, hidden: number, rng: Random) {
    super();
    this.#layers = this.child(
      "layers",
      new MixFfnConvs(dim, hidden, rng, (c) => mitConv(c, rng)),
    );
  }
  forward(x: Tensor, h: number, w: number): Tensor {
    return nchwToTokens(this.#layers.forward(tokensToNchw(x, h, w)));
  }
}

/** Pre-norm block: x + dropPath(attn(LN1 x)), then x + dropPath(ffn(LN2 x)). */
class MitBlock extends Module {
  readonly #norm1: LayerNorm;
  readonly #attn: EfficientAttention;
  readonly #norm2: LayerNorm;
  readonly #ffn: MixFFN;
  readonly #dropPath: StochasticDepth;
  constructor(
    dim: number,
    heads: number,
    mlpRatio: number,
    sr: number,
    dropPath: number,
    rng: Random,
  ) {
    super();
    this.#norm1 = this.child("norm1", ln(dim));
    this.#attn = this.child("attn", new EfficientAttention(dim, heads, sr, rng));
    this.#norm2 = this.child("norm2", ln(dim));
    this.#ffn = this.child("ffn", new MixFFN(dim, mlpRatio * dim, rng));
    // Upstream has one DropPath in the attention and one in the FFN, same rate; neither has
    // parameters, so one module drawing a fresh mask per call is the same.
    this.#dropPath = this.child("drop_path", new StochasticDepth(dropPath));
  }
  /** Of the per-token tensors only the residual stream and what attention and Mix-FFN keep
   * stay after the forward (Tensor.evict): LN1's output comes back from x for the projections'
   * weight gradients (one normalisation pass), LN2's (which only a layout copy reads) and the
   * branch outputs before and after stochastic depth (which only the residual sums read) never
   * do. */
  forward(x: Tensor, h: number, w: number): Tensor {
    const x1 = this.#residual(x, this.#norm1, (n) => this.#attn.forward(n, h, w));
    return this.#residual(x1, this.#norm2, (n) => this.#ffn.forward(n, h, w));
  }

  /** x + dropPath(branch(norm(x))); the norm's output goes once the branch has read it, the
   * branch outputs once the sum has. */
  #residual(x: Tensor, norm: LayerNorm, branch: (n: Tensor) => Tensor): Tensor {
    const n = norm.forward(x);
    const b = branch(n);
    n.evict();
    const d = this.#dropPath.forward(b);
    const y = add(x, d);
    for (const t of [d, b]) t.evict();
    return y;
  }
}

/** layers.{i}: [PatchEmbed, blocks, final LN], as upstream's ModuleList. */
class MitStage extends Module {
  readonly embed: PatchEmbed;
  readonly blocks: ModuleList<MitBlock>;
  readonly norm: LayerNorm;
  constructor(embed: PatchEmbed, blocks: MitBlock[], dim: number) {
    super();
    this.embed = this.child("0", embed);
    this.blocks = this.child("1", new ModuleList(blocks));
    this.norm = this.child("2", ln(dim));
  }
  forward(x: Tensor): Tensor {
    const { tokens, h, w } = this.embed.forward(x);
    let t = tokens;
    for (const blk of this.blocks.items) t = blk.forward(t, h, w);
    return tokensToNchw(this.norm.forward(t), h, w);
  }
}

/** The MiT encoder: NCHW image → one NCHW feature per stage (after its final LN). */
export class MixVisionTransformer extends Module {
  readonly numStages: number;
  readonly #stages: MitStage[] = [];

  constructor(readonly cfg: MitConfig, seed = 0, inChannels = 3) {
    super();
    this.numStages = cfg.embedDims.length;
    const n = this.numStages;
    for (const [k, v] of Object.entries(cfg)) {
      if (Array.isArray(v) && v.length !== n) {
        throw new Error(`MitConfig.${k} has ${v.length} entries for ${n} stages`);
      }
    }
    const rng = new Random(seed);
    // Stochastic depth: torch.linspace(0, rate, total blocks), block by block.
    const total = cfg.depths.reduce((s, d) => s + d, 0);
    const dpr = Array.from(
      { length: total },
      (_, k) => total > 1 ? (cfg.dropPathRate * k) / (total - 1) : 0,
    );
    const layers = this.child("layers", new Children());
    let cin = inChannels, cur = 0;
    for (let i = 0; i < n; i++) {
      const dim = cfg.embedDims[i];
      const embed = new PatchEmbed(cin, dim, cfg.patchSizes[i], cfg.strides[i], rng);
      const blocks = Array.from(
        { length: cfg.depths[i] },
        (_, j) => new MitBlock(dim, cfg.heads[i], cfg.mlpRatio, cfg.srRatios[i], dpr[cur + j], rng),
      );
      this.#stages.push(layers.add(String(i), new MitStage(embed, blocks, dim)));
      cin = dim;
      cur += cfg.depths[i];
    }
  }

  /** No batch statistics: both dates may travel as one batch (ChangerEx). */
  readonly batchStatistics = false;

  /** Channels of each stage's output. */
  get stageChannels(): readonly number[] {
    return this.cfg.embedDims;
  }

  /** MiT has no stem apart from stage 1's patch embedding. */
  stem(x: Tensor): Tensor {
    return x;
  }

  /** Stage i (0-based) on NCHW input → NCHW output after the stage's final LayerNorm. */
  stage(i: number, x: Tensor): Tensor {
    const s = this.#stages[i];
    if (!s) throw new Error(`MixVisionTransformer: no stage ${i} (has ${this.numStages})`);
    return s.forward(x);
  }

  /** All stage outputs, stage by stage. */
  forward(x: Tensor): Tensor[] {
    const outs: Tensor[] = [];
    for (let i = 0; i < this.numStages; i++) outs.push(x = this.stage(i, x));
    return outs;
  }
}
