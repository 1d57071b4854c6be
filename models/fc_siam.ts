// FC-EF, FC-Siam-Conc and FC-Siam-Diff (Daudt, Le Saux, Boulch, ICIP 2018): a U-Net encoder of
// four stages (3×3 conv + BN + ReLU + Dropout2d(0.2), 2×2 max pooling), shared by both dates in
// the Siamese forms, and a decoder of transposed convolutions whose skips are
//   EF:   the early-fused encoder's features (A and B stacked as 6 channels),
//   Conc: both dates' features concatenated,
//   Diff: |features(A) − features(B)|.
// Parameter names follow the authors' code (conv11 … conv11d, bn11 …, upconv4 …).

import { BatchNorm2d } from "../engine/nn/norm.ts";
import { Conv2d, ConvTranspose2d } from "../engine/nn/conv.ts";
import { ConvBnAct } from "../engine/nn/conv_bn_act.ts";
import { Module } from "../engine/nn/module.ts";
import { absDiff, concat, pad2d } from "../engine/ops/layout.ts";
import { maxPool2d } from "../engine/ops/pool.ts";
import { Random } from "../engine/random.ts";
import type { Tensor } from "../engine/tensor.ts";
import type { ChangeDetector } from "./model.ts";

export type FcVariant = "ef" | "conc" | "diff";

const ENCODER: [string, number, number][][] = [
  [["11", 0, 16], ["12", 16, 16]],
  [["21", 16, 32], ["22", 32, 32]],
  [["31", 32, 64], ["32", 64, 64], ["33", 64, 64]],
  [["41", 64, 128], ["42", 128, 128], ["43", 128, 128]],
];

/** Decoder stages: the upconv's channels, then (name, in, out) of the transposed 3×3 convs;
 * `skip` marks the conv that takes the concatenation. */
const DECODER: { up: string; ch: number; convs: [string, number, number][] }[] = [
  { up: "4", ch: 128, convs: [["43d", 128, 128], ["42d", 128, 128], ["41d", 128, 64]] },
  { up: "3", ch: 64, convs: [["33d", 64, 64], ["32d", 64, 64], ["31d", 64, 32]] },
  { up: "2", ch: 32, convs: [["22d", 32, 32], ["21d", 32, 16]] },
  { up: "1", ch: 16, convs: [["12d", 16, 16]] },
];

export class FcSiam extends Module implements ChangeDetector {
  readonly #blocks = new Map<string, ConvBnAct>();
  readonly #ups = new Map<string, ConvTranspose2d>();
  readonly #last: ConvTranspose2d;

  constructor(readonly variant: FcVariant, seed = 0, inChannels = 3, classes = 2) {
    super();
    const rng = new Random(seed);
    const first = variant === "ef" ? 2 * inChannels : inChannels;
    for (const stage of ENCODER) {
      for (const [n, cin, cout] of stage) {
        this.#layer(n, new Conv2d(cin || first, cout, { kernel: 3, padding: 1 }, rng), cout);
      }
    }
    // The concatenation widens the first conv of each decoder stage.
    const widen = variant === "conc" ? 3 : 2;
    for (const { up, ch, convs } of DECODER) {
      this.#ups.set(
        up,
        this.child(
          `upconv${up}`,
          new ConvTranspose2d(ch, ch, { kernel: 3, padding: 1, stride: 2, outputPadding: 1 }, rng),
        ),
      );
      convs.forEach(([n, cin, cout], j) => {
        const c = new ConvTranspose2d(
          j === 0 ? cin * widen : cin,
          cout,
          { kernel: 3, padding: 1 },
          rng,
        );
        this.#layer(n, c, cout);
      });
    }
    this.#last = this.child(
      "conv11d",
      new ConvTranspose2d(16, classes, { kernel: 3, padding: 1 }, rng),
    );
  }

  /** conv → BN → ReLU → Dropout2d(0.2), named conv{name} and bn{name} at this level. */
  #layer(name: string, conv: Conv2d | ConvTranspose2d, channels: number): void {
    const block = new ConvBnAct({
      conv: [`conv${name}`, conv],
      bn: [`bn${name}`, new BatchNorm2d(channels)],
      act: "relu",
      dropout: 0.2,
    });
    this.#blocks.set(name, this.inline(block));
  }

  #block(name: string, x: Tensor): Tensor {
    return this.#blocks.get(name)!.forward(x);
  }

  #encode(x: Tensor): { bottom: Tensor; skips: Tensor[] } {
    const skips: Tensor[] = [];
    for (const stage of ENCODER) {
      for (const [n] of stage) x = this.#block(n, x);
      skips.push(x);
      x = maxPool2d(x, { kernel: 2, stride: 2 });
    }
    return { bottom: x, skips };
  }

  forward(a: Tensor, b: Tensor): Tensor {
    let x: Tensor;
    let s1: Tensor[], s2: Tensor[] = [];
    if (this.variant === "ef") ({ bottom: x, skips: s1 } = this.#encode(concat([a, b], 1)));
    else {
      s1 = this.#encode(a).skips;
      ({ bottom: x, skips: s2 } = this.#encode(b));
    }
    DECODER.forEach(({ up, convs }, k) => {
      const upsampled = this.#ups.get(up)!.forward(x);
      x = upsampled;
      const skip = s1[3 - k];
      // Odd sizes: the upsampled map can be one pixel short; replicate its border to fit.
      const dh = skip.shape[2] - x.shape[2], dw = skip.shape[3] - x.shape[3];
      if (dh || dw) x = pad2d(x, [0, dw, 0, dh], "replicate");
      const diff = this.variant === "diff" ? absDiff(skip, s2[3 - k]) : null;
      const parts = this.variant === "ef"
        ? [x, skip]
        : this.variant === "conc"
        ? [x, skip, s2[3 - k]]
        : [x, diff!];
      // The stage's first conv reads the parts without joining them (its Winograd routes take
      // each part's channel slab: engine/ops/conv2d_concat.ts), so they stay for its weight
      // gradient, which reads them as the joined tensor held them before.
      // Padded, the up-convolution's output is read by no backward rule (the padding's
      // gradient needs no input, the up-convolution's none of its output): let go.
      if (x !== upsampled) upsampled.evict();
      x = this.#blocks.get(convs[0][0])!.forward(parts);
      for (const [n] of convs.slice(1)) x = this.#block(n, x);
    });
    return this.#last.forward(x);
  }
}
