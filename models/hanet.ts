// HANet (Han et al. 2023) as Open-CD builds it (configs/hanet/hanet_512x512_200k_cgwx.py):
// DIEncoderDecoder with backbone `HAN` (base channels 40) and an mmseg FCNHead with no convs,
// i.e. Dropout2d(0.1) and the 1×1 classifier at full resolution.
//   Encoder, shared by the dates: a 5×5 conv and four feature-extraction cells (FEC) at 1/1,
//     1/2, 1/4, 1/8 with 2×2 average pooling between.
//   Per level: the dates' features concatenated, four grouped dilated 3×3 convs (d = 1…4), a
//     1×1 fuse, then hierarchical attention: CAM branch + row(column(x)) attention.
//   Decoder: each level concatenated with the ×2 bilinear upsampling of the coarser result,
//     a 1×1 conv (600 → 80), then the head.
// Names follow Open-CD's state_dict (backbone.*, decode_head.conv_seg).

import { noGrad } from "../engine/autograd.ts";
import { PReLU } from "../engine/nn/activation.ts";
import { Conv2d } from "../engine/nn/conv.ts";
import { Dropout2d } from "../engine/nn/dropout.ts";
import { type Layer, Module, Sequential } from "../engine/nn/module.ts";
import { BatchNorm2d } from "../engine/nn/norm.ts";
import { convThenBn, type EvalFolding } from "../engine/nn/fold.ts";
import { attention } from "../engine/ops/attention.ts";
import { add, addRelu, mul, sub } from "../engine/ops/elementwise.ts";
import { concat, permute, slice } from "../engine/ops/layout.ts";
import { conv2d } from "../engine/ops/conv2d.ts";
import { matmul } from "../engine/ops/matmul.ts";
import { avgPool2d } from "../engine/ops/pool.ts";
import { max } from "../engine/ops/reduce.ts";
import { interpolate } from "../engine/ops/resample.ts";
import { reshape } from "../engine/ops/shape.ts";
import { softmax } from "../engine/ops/softmax.ts";
import { Random } from "../engine/random.ts";
import { full, type Tensor, write } from "../engine/tensor.ts";
import { kaimingFanOut } from "./init.ts";
import type { ChangeDetector, Tap } from "./model.ts";

/** Feature extraction cell: y = conv1(x); out = ReLU(bn2(conv2(ReLU(bn1(y)))) + y), the
 * identity taken after conv1, before bn1. */
class FEC extends Module implements Layer, EvalFolding {
  foldInEval = true;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  constructor(cin: number, mid: number, cout: number, rng: Random) {
    super();
    this.conv1 = this.child("conv1", new Conv2d(cin, mid, { kernel: 3, padding: 1 }, rng));
    this.bn1 = this.child("bn1", new BatchNorm2d(mid));
    this.conv2 = this.child("conv2", new Conv2d(mid, cout, { kernel: 1, bias: false }, rng));
    this.bn2 = this.child("bn2", new BatchNorm2d(cout));
  }
  forward(x: Tensor): Tensor {
    const y = this.conv1.forward(x);
    // The ReLU in bn1's pass; conv2 → bn2 one folded conv in eval.
    const h = this.bn1.forward(y, { activation: "relu" });
    return addRelu(convThenBn(this.conv2, this.bn2, h, "none", this.foldInEval), y);
  }
}

/** Channel attention (DANet's CAM): A = softmax(max_row(E) − E) with E = X·Xᵀ over the
 * pixels; out = γ·(A·X) + X. */
class CAM extends Module implements Layer {
  readonly gamma: Tensor;
  constructor() {
    super();
    this.gamma = this.param("gamma", full([1], 0));
  }
  forward(x: Tensor): Tensor {
    const [b, c, h, w] = x.shape;
    const flat = reshape(x, [b, c, h * w]);
    const energy = matmul(flat, flat, { transB: true });
    // softmax(max − E) = softmax(−E): the max term's gradient sums to zero over each row, so it
    // is computed without one, and subtracted as upstream does (same rounding).
    const rowMax = noGrad(() => max(energy, -1, true));
    const attn = softmax(sub(rowMax, energy));
    const out = reshape(matmul(attn, flat), [b, c, h, w]);
    return add(mul(this.gamma, out), x);
  }
}

/** Conv_CAM_Layer: conv 3×3 → BN → PReLU → CAM → conv 3×3 → BN → PReLU (`attn.0…6`). */
class CamAttention extends Module implements Layer {
  readonly attn: Sequential;
  constructor(cin: number, cout: number, rng: Random) {
    super();
    this.attn = this.child(
      "attn",
      new Sequential(
        new Conv2d(cin, 32, { kernel: 3, padding: 1 }, rng),
        new BatchNorm2d(32),
        new PReLU(),
        new CAM(),
        new Conv2d(32, cout, { kernel: 3, padding: 1 }, rng),
        new BatchNorm2d(cout),
        new PReLU(),
      ),
    );
  }
  forward(x: Tensor): Tensor {
    return this.attn.forward(x);
  }
}

/** Unscaled softmax attention per row of [B, L, S, D] tensors (q, k, v). */
function axialAttention(q: Tensor, k: Tensor, v: Tensor): Tensor {
  return attention(q, k, v, { scale: 1 });
}

/** HANet's RowAttention (`along` "row": each row attends over its W pixels) or ColAttention
 * ("col": each column over its H): Q, K, V 1×1 convs, softmax(QKᵀ) with no scaling, then
 * γ·out + x. */
class AxialAttention extends Module implements Layer {
  readonly gamma: Tensor;
  readonly query: Conv2d;
  readonly key: Conv2d;
  readonly value: Conv2d;
  constructor(channels: number, readonly along: "row" | "col", rng: Random) {
    super();
    this.gamma = this.param("gamma", full([1], 0));
    this.query = this.child("query_conv", new Conv2d(channels, channels, { kernel: 1 }, rng));
    this.key = this.child("key_conv", new Conv2d(channels, channels, { kernel: 1 }, rng));
    this.value = this.child("value_conv", new Conv2d(channels, channels, { kernel: 1 }, rng));
  }
  forward(x: Tensor): Tensor {
    // Rows: [B, C, H, W] → [B, H, W, C] (batch B·H, sequence W); columns: → [B, W, H, C]. The
    // 1×1 convs write that layout themselves, as Xᵀ·Wᵀ over the pixels (rows of H·W, or of W·H
    // from the one spatially transposed copy of x), instead of a permute of each result.
    const [b, c, h, w] = x.shape;
    const [src, s0, s1] = this.along === "row" ? [x, h, w] : [permute(x, [0, 1, 3, 2]), w, h];
    const pixels = reshape(src, [b, c, s0 * s1]);
    const seq = (conv: Conv2d) =>
      reshape(
        matmul(pixels, reshape(conv.weight, [c, c]), {
          transA: true,
          transB: true,
          bias: conv.bias ?? undefined,
        }),
        [b, s0, s1, c],
      );
    const out = axialAttention(seq(this.query), seq(this.key), seq(this.value));
    const back = this.along === "row" ? [0, 3, 1, 2] : [0, 3, 2, 1];
    return add(mul(this.gamma, permute(out, back)), x);
  }
}

/** One level's fusion of the dates and its attention: c = cam(c₁) + row(col(c₁)), with c₁ the
 * 1×1 fuse of four grouped dilated convs over cat(a, b). Its modules are the backbone's own
 * (`conv6_k_d`, `conv{k}_1`, `cam_attention_k`, `row_attention_k`, `col_attention_k`). */
class Level {
  readonly dilated: Conv2d[];
  constructor(
    readonly f: number,
    readonly k: number,
    add: <M extends Module>(name: string, m: M) => M,
    rng: Random,
  ) {
    this.dilated = [1, 2, 3, 4].map((d) =>
      add(
        `conv6_${k}_${d}`,
        new Conv2d(2 * f, f, { kernel: 3, padding: d, dilation: d, groups: f / 2 }, rng),
      )
    );
    this.fuse = add(`conv${k}_1`, new Conv2d(4 * f, f, { kernel: 1 }, rng));
    this.cam = add(`cam_attention_${k}`, new CamAttention(f, f, rng));
    this.row = add(`row_attention_${k}`, new AxialAttention(f, "row", rng));
    this.col = add(`col_attention_${k}`, new AxialAttention(f, "col", rng));
  }
  readonly fuse: Conv2d;
  readonly cam: CamAttention;
  readonly row: AxialAttention;
  readonly col: AxialAttention;
  forward(a: Tensor, b: Tensor): Tensor {
    const ab = concat([a, b], 1);
    const c1 = this.fuse.forward(concat(this.dilated.map((c) => c.forward(ab)), 1));
    return add(this.cam.forward(c1), this.row.forward(this.col.forward(c1)));
  }
}

class HAN extends Module {
  readonly conv00: Conv2d;
  readonly encoder: FEC[];
  readonly levels: Level[];
  readonly conv6: Conv2d;
  constructor(rng: Random, n1 = 40) {
    super();
    const f = [n1, 2 * n1, 4 * n1, 8 * n1];
    this.conv00 = this.child("conv0_0", new Conv2d(3, n1, { kernel: 5, padding: 2 }, rng));
    this.encoder = [
      this.child("conv0", new FEC(f[0], f[0], f[0], rng)),
      this.child("conv2", new FEC(f[0], f[1], f[1], rng)),
      this.child("conv4", new FEC(f[1], f[2], f[2], rng)),
      this.child("conv5", new FEC(f[2], f[3], f[3], rng)),
    ];
    this.conv6 = this.child(
      "conv6",
      new Conv2d(f[0] + f[1] + f[2] + f[3], f[1], { kernel: 1 }, rng),
    );
    // Level by level (upstream declares the fusion convs of all levels, then the attention
    // modules; names alone matter for loading).
    this.levels = f.map((c, i) => new Level(c, i + 1, (n, m) => this.child(n, m), rng));
    // Built but never used upstream (no gradient); kept for the state_dict.
    this.child("c4_conv", new Conv2d(f[3], f[1], { kernel: 3, padding: 1 }, rng));
    this.child("c3_conv", new Conv2d(f[2], f[1], { kernel: 3, padding: 1 }, rng));
    this.child("c2_conv", new Conv2d(f[1], f[1], { kernel: 3, padding: 1 }, rng));
    this.child("c1_conv", new Conv2d(f[0], f[0], { kernel: 3, padding: 1 }, rng));
    // HAN's own init: kaiming_normal (fan_out, ReLU) on every conv weight, biases as PyTorch's
    // default; BN weight 1, bias 0 (already).
    kaimingAll(this, rng);
  }

  /** Per-date encoder features at 1/1, 1/2, 1/4, 1/8. Date by date: the FEC BatchNorms must
   * not mix the dates' statistics in training. */
  #encode(x: Tensor): Tensor[] {
    const pool = (t: Tensor) => avgPool2d(t, { kernel: 2, stride: 2 });
    const out = [this.encoder[0].forward(this.conv00.forward(x))];
    for (let i = 1; i < 4; i++) out.push(this.encoder[i].forward(pool(out[i - 1])));
    return out;
  }

  /** Upstream: c₄ → c₃ = cat(c₃, Up(c₄)) → c₂ = cat(c₂, Up(c₃)) → c₁ = cat(c₁, Up(c₂)), then
   * conv6 (1×1, 600 → 80). A 1×1 conv is linear over channels and the bilinear ×2 is linear
   * per channel, so they commute: conv6 splits into one block of its weight per level,
   * y₄ = W₄c₄, y_k = W_k c_k + Up(y_{k+1}), plus the bias at the end. Equal up to rounding, it
   * never builds the 600-channel full-resolution concat (5 GB at 8 × 512², past the storage
   * binding limits) and runs the 1×1 conv on 80 channels where upstream runs it on 600. */
  forward(a: Tensor, b: Tensor): Tensor {
    const fa = this.#encode(a), fb = this.#encode(b);
    const up = (t: Tensor) => interpolate(t, { scale: 2, mode: "bilinear", alignCorners: false });
    const w = this.conv6.weight;
    let start = w.shape[1], y: Tensor | null = null;
    for (let k = 3; k >= 0; k--) {
      const c = this.levels[k].forward(fa[k], fb[k]);
      start -= c.shape[1];
      const block = slice(w, 1, start, start + c.shape[1]);
      const bias = k === 0 ? this.conv6.bias : null;
      const own = conv2d(c, block, { bias });
      y = y ? add(own, up(y)) : own;
    }
    return y!;
  }
}

/** kaiming_normal_(fan_out, ReLU) on every Conv2d weight under `m`, biases kept. */
function kaimingAll(m: Module, rng: Random): void {
  for (const [, c] of m.children()) {
    if (c instanceof Conv2d) kaimingFanOut(c, rng, { keepBias: true });
    else kaimingAll(c, rng);
  }
}

export class HANet extends Module implements ChangeDetector {
  readonly backbone: HAN;
  constructor(seed = 0, classes = 2) {
    super();
    const rng = new Random(seed);
    this.backbone = this.child("backbone", new HAN(rng));
    this.decodeHead = this.child("decode_head", new FcnHeadNoConvs(80, classes, rng));
  }
  readonly decodeHead: FcnHeadNoConvs;

  /** Taps: "feat" (conv6's output, the head's input). */
  forward(a: Tensor, b: Tensor, tap?: Tap): Tensor {
    const feat = this.backbone.forward(a, b);
    tap?.("feat", feat);
    return this.decodeHead.forward(feat);
  }
}

/** mmseg FCNHead with num_convs 0: BaseDecodeHead's Dropout2d (default ratio 0.1) and the 1×1
 * conv_seg (init_cfg normal(0, 0.01), bias 0). */
class FcnHeadNoConvs extends Module implements Layer {
  readonly convSeg: Conv2d;
  readonly dropout: Dropout2d;
  constructor(channels: number, classes: number, rng: Random) {
    super();
    this.convSeg = this.child("conv_seg", new Conv2d(channels, classes, { kernel: 1 }, rng));
    write(this.convSeg.weight, rng.normal(this.convSeg.weight.size, 0.01));
    write(this.convSeg.bias!, new Float32Array(classes));
    this.dropout = this.child("dropout", new Dropout2d(0.1));
  }
  forward(x: Tensor): Tensor {
    return this.convSeg.forward(this.dropout.forward(x));
  }
}

export function createHANet(seed = 0): HANet {
  return new HANet(seed);
}
