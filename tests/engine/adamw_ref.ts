// PyTorch's AdamW (single-tensor path, no amsgrad) in float64, the reference of the AdamW tests;
// per-parameter LR and weight-decay multipliers as torch param groups.

export interface AdamWRefOptions {
  beta1: number;
  beta2: number;
  eps: number;
  wd: number;
  /** Per parameter: lr·lrMult and wd·decayMult (default 1 and 1). */
  multipliers?: readonly { lrMult: number; decayMult: number }[];
}

export class AdamWRef {
  m: Float64Array[];
  v: Float64Array[];
  t = 0;
  constructor(public p: Float64Array[], readonly o: AdamWRefOptions) {
    this.m = p.map((x) => new Float64Array(x.length));
    this.v = p.map((x) => new Float64Array(x.length));
  }
  step(grads: ArrayLike<number>[], baseLr: number): void {
    const { beta1, beta2, eps } = this.o;
    this.t++;
    const bc1 = 1 - beta1 ** this.t;
    const bc2 = 1 - beta2 ** this.t;
    this.p.forEach((p, k) => {
      const { lrMult, decayMult } = this.o.multipliers?.[k] ?? { lrMult: 1, decayMult: 1 };
      const lr = baseLr * lrMult, wd = this.o.wd * decayMult;
      const g = grads[k], m = this.m[k], v = this.v[k];
      for (let i = 0; i < p.length; i++) {
        p[i] *= 1 - lr * wd;
        m[i] = beta1 * m[i] + (1 - beta1) * g[i];
        v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
        p[i] -= (lr / bc1) * m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + eps);
      }
    });
  }
}
