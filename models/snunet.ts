// SNUNet-CD (Fang, Li, Shao, Li, GRSL 2021) with the Ensemble Channel Attention Module, as
// Open-CD builds it (the toolbox the JL1-CD paper used). A Siamese encoder of residual blocks
// feeds a UNet++ grid of nested nodes x[i][j] (depth i at 1/2^i, column j):
//
//   x[i][0]  encoder: date A down to 1/8, date B down to 1/16
//   x[i][j]  = block(cat[xA[i][0], xB[i][0], x[i][1..j−1], up(x[i+1][j−1])])
//
// where the upsampled input of column 1 comes from B's encoder only (Open-CD's choice), and the
// four full-resolution outputs x[0][1..4] are fused by ECAM into 4·c channels. The change
// detector adds Open-CD's decode head: an FCN head with no convs, i.e. Dropout2d(0.1) and a 1×1
// classifier. Names follow Open-CD's state_dict (backbone.conv0_0.conv1 …, decode_head.conv_seg).

import { BatchNorm2d } from "../engine/nn/norm.ts";
import { Conv2d, ConvTranspose2d } from "../engine/nn/conv.ts";
import { ConvBnAct } from "../engine/nn/conv_bn_act.ts";
import { Dropout2d } from "../engine/nn/dropout.ts";
import { Module } from "../engine/nn/module.ts";
import { add, addRelu, mul, sigmoid } from "../engine/ops/elementwise.ts";
import { concat } from "../engine/ops/layout.ts";
import { adaptiveAvgPool2d, adaptiveMaxPool2d, maxPool2d } from "../engine/ops/pool.ts";
import { Random } from "../engine/random.ts";
import { type Tensor, write } from "../engine/tensor.ts";
import { kaimingFanOut as kaimingInit } from "./init.ts";
import type { ChangeDetector } from "./model.ts";

/** Encoder depth: 1/1 … 1/16. */
const DEPTH = 5;

/** Open-CD re-initialises every Conv2d weight with kaiming_normal_(mode="fan_out", relu);
 * biases and transposed convs keep PyTorch's defaults. */
const kaimingFanOut = <C extends Conv2d>(conv: C, rng: Random): C =>
  kaimingInit(conv, rng, { keepBias: true });

/** conv → BN → ReLU → conv → BN, plus the first conv's output (before its BN), then ReLU. The
 * second conv and its BN are one ConvBnAct (the BN folded into the conv in eval); the first BN
 * cannot fold, since the residual needs that conv's own output, and runs with its ReLU fused.
 * In training, of the block's seven full-size intermediates only three stay for the backward
 * (Tensor.evict lets the others go once their forward readers are done): the first conv's
 * output (the first BN's input, also the residual), the second conv's output (the second BN's
 * input) and the block's output (its ReLU's backward reads it). The first BN + ReLU output is
 * written again from the first conv's output for the second conv's weight gradient (one
 * pointwise pass); the second BN's output and the residual sum are read by no backward rule
 * and never come back. */
class NestedBlock extends Module {
  readonly #conv1: Conv2d;
  readonly #bn1: BatchNorm2d;
  readonly #second: ConvBnAct;
  constructor(cin: number, cout: number, rng: Random) {
    super();
    const k3 = { kernel: 3, padding: 1 };
    this.#conv1 = this.child("conv1", kaimingFanOut(new Conv2d(cin, cout, k3, rng), rng));
    this.#bn1 = this.child("bn1", new BatchNorm2d(cout));
    const conv2 = kaimingFanOut(new Conv2d(cout, cout, k3, rng), rng);
    this.#second = this.inline(
      new ConvBnAct({ conv: ["conv2", conv2], bn: ["bn2", new BatchNorm2d(cout)] }),
    );
  }
  /** x: the block's input, or the parts of a decoder node's concatenated input (the first conv
   * reads them without joining them where its routes allow: engine/ops/conv2d_concat.ts). */
  forward(x: Tensor | Tensor[]): Tensor {
    const identity = Array.isArray(x) ? this.#conv1.forwardConcat(x) : this.#conv1.forward(x);
    const h = this.#bn1.forward(identity, { activation: "relu" });
    const y = this.#second.forward(h);
    h.evict();
    const out = addRelu(y, identity);
    y.evict();
    return out;
  }
}

/** 2×2 stride-2 transposed conv (Open-CD's `up` with bilinear off), named `up`. */
class Up extends Module {
  readonly #up: ConvTranspose2d;
  constructor(channels: number, rng: Random) {
    super();
    this.#up = this.child(
      "up",
      new ConvTranspose2d(channels, channels, { kernel: 2, stride: 2 }, rng),
    );
  }
  forward(x: Tensor): Tensor {
    return this.#up.forward(x);
  }
}

/** CBAM-style channel attention: a shared bottleneck MLP (1×1 convs, no bias) over the global
 * average and the global max, summed, then sigmoid → [B, C, 1, 1]. */
class ChannelAttention extends Module {
  readonly #fc1: Conv2d;
  readonly #fc2: Conv2d;
  constructor(channels: number, ratio: number, rng: Random) {
    super();
    const hidden = Math.floor(channels / ratio);
    const k1 = { kernel: 1, bias: false };
    this.#fc1 = this.child("fc1", kaimingFanOut(new Conv2d(channels, hidden, k1, rng), rng));
    this.#fc2 = this.child("fc2", kaimingFanOut(new Conv2d(hidden, channels, k1, rng), rng));
  }
  forward(x: Tensor): Tensor {
    const mlp = (p: Tensor) => this.#fc2.forward(this.#fc1.forward(p, "relu"));
    return sigmoid(add(mlp(adaptiveAvgPool2d(x, 1)), mlp(adaptiveMaxPool2d(x, 1))));
  }
}

/** The backbone: Siamese encoder, nested decoder and ECAM. Output [B, 4·base, H, W]; H and W
 * must be multiples of 16. */
export class SNUNetECAM extends Module {
  readonly filters: number[];
  /** blocks[i][j] is conv{i}_{j}; ups[i][j] is Up{i}_{j}, which lifts x[i][j] to depth i − 1. */
  readonly #blocks: NestedBlock[][] = [];
  readonly #ups: Up[][] = [];
  readonly #ca: ChannelAttention;
  readonly #ca1: ChannelAttention;

  constructor(rng: Random, inChannels = 3, readonly base = 16) {
    super();
    this.filters = Array.from({ length: DEPTH }, (_, i) => base << i);
    const f = this.filters;
    for (let i = 0; i < DEPTH; i++) {
      this.#blocks.push([]);
      this.#ups.push([]);
    }
    // Column 0 is the encoder; node (i, j) exists while i + j < DEPTH, and every node below
    // depth 0 has an Up. Column by column, as Open-CD registers them (same state_dict order).
    for (let j = 0; j < DEPTH; j++) {
      for (let i = 0; i + j < DEPTH; i++) {
        // Inputs: A's and B's encoder features, the j − 1 earlier nodes, the lifted deeper node.
        const cin = j === 0 ? (i === 0 ? inChannels : f[i - 1]) : f[i] * (j + 1) + f[i + 1];
        this.#blocks[i][j] = this.child(`conv${i}_${j}`, new NestedBlock(cin, f[i], rng));
        if (i > 0) this.#ups[i][j] = this.child(`Up${i}_${j}`, new Up(f[i], rng));
      }
    }
    // ECAM: attention over the 4 stacked outputs and over their sum ("intra" attention).
    this.#ca = this.child("ca", new ChannelAttention(f[0] * 4, 16, rng));
    this.#ca1 = this.child("ca1", new ChannelAttention(f[0], 4, rng));
  }

  #encode(x: Tensor, depth: number): Tensor[] {
    const out: Tensor[] = [];
    for (let i = 0; i < depth; i++) {
      if (i > 0) x = maxPool2d(x, { kernel: 2, stride: 2 });
      x = this.#blocks[i][0].forward(x);
      out.push(x);
    }
    return out;
  }

  forward(a: Tensor, b: Tensor): Tensor {
    const [h, w] = [a.shape[2], a.shape[3]];
    if (h % 16 || w % 16) throw new Error(`SNUNet needs H and W divisible by 16, got ${h}×${w}`);
    // Open-CD never computes A's 1/16 stage: only B's feeds the decoder there.
    const xa = this.#encode(a, DEPTH - 1);
    const xb = this.#encode(b, DEPTH);
    const x: Tensor[][] = xb.map((t) => [t]);
    // Anti-diagonals k = i + j, deepest node first, as Open-CD's forward orders them.
    for (let k = 1; k < DEPTH; k++) {
      for (let i = k - 1; i >= 0; i--) {
        const j = k - i;
        const lifted = this.#ups[i + 1][j - 1].forward(x[i + 1][j - 1]);
        // The node's input is the concatenation of these; its first conv reads them as parts
        // (held for the backward anyway: the nodes' ReLUs read them, the upsampled one lives
        // until the conv's rule), so no joined copy is written, in the forward or again for the
        // weight gradient, and the input gradient is written per part.
        const inputs = [xa[i], xb[i], ...x[i].slice(1, j), lifted];
        x[i][j] = this.#blocks[i][j].forward(inputs);
      }
    }
    return this.#ecam(x[0].slice(1));
  }

  /** ECAM = CA(out) × (out + CA1(Σ outputs) repeated 4×), out = the outputs concatenated. */
  #ecam(outputs: Tensor[]): Tensor {
    const out = concat(outputs, 1);
    const sums = outputs.slice(1).reduce((s, t) => [...s, add(s[s.length - 1], t)], [outputs[0]]);
    const intra = sums[sums.length - 1];
    const ca1 = this.#ca1.forward(intra);
    const y = mul(this.#ca.forward(out), add(out, concat(outputs.map(() => ca1), 1)));
    // The stacked outputs and the partial sums are read by no backward rule (the pools keep
    // their argmax, the adds and the concat read nothing): let go, never written again.
    for (const t of [out, ...sums.slice(1)]) t.evict();
    return y;
  }
}

/** mmseg's FCNHead with num_convs = 0 and concat_input off: Dropout2d(0.1) then a 1×1 conv
 * (weights N(0, 0.01), bias 0, as mmseg initialises `conv_seg`). */
class FcnHead extends Module {
  readonly #dropout: Dropout2d;
  readonly #convSeg: Conv2d;
  constructor(channels: number, classes: number, rng: Random) {
    super();
    this.#dropout = this.child("dropout", new Dropout2d(0.1));
    this.#convSeg = this.child("conv_seg", new Conv2d(channels, classes, { kernel: 1 }, rng));
    write(this.#convSeg.weight, rng.normal(this.#convSeg.weight.size, 0.01));
    write(this.#convSeg.bias!, new Float32Array(classes));
  }
  forward(x: Tensor): Tensor {
    return this.#convSeg.forward(this.#dropout.forward(x));
  }
}

/** SNUNet-CD/ECAM change detector: 2-channel logits (softmax form). */
export class SNUNet extends Module implements ChangeDetector {
  readonly backbone: SNUNetECAM;
  readonly #head: FcnHead;
  constructor(seed = 0, base = 16, classes = 2) {
    super();
    const rng = new Random(seed);
    this.backbone = this.child("backbone", new SNUNetECAM(rng, 3, base));
    this.#head = this.child("decode_head", new FcnHead(base * 4, classes, rng));
  }
  forward(a: Tensor, b: Tensor): Tensor {
    const features = this.backbone.forward(a, b);
    const logits = this.#head.forward(features);
    // ECAM's product feeds only the head's dropout, whose backward reads its mask, not its
    // input: let go, never written again (in training; an eval dropout shares its memory, and
    // a backward through it would write it again).
    features.evict();
    return logits;
  }
}
