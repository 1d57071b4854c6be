// PyTorch's AdamW (single-tensor path, no amsgrad) in float64, the reference of the AdamW tests;
// per-parameter LR and weight-decay multipliers as torch param groups. A parameter whose gradient
// is null (torch: None) is skipped: no decay, moments kept, and its own step count (torch keeps
// one per parameter, `state[p]["step"]`) does not advance.

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
  /** Per parameter: the steps it took (had a gradient in). */
  steps: number[];
  constructor(public p: Float64Array[], readonly o: AdamWRefOptions) {
    this.m = p.map((x) => new Float64Array(x.length));
    this.v = p.map((x) => new Float64Array(x.length));
    this.steps = p.map(() => 0);
  }
  step(grads: (ArrayLike<number> | null)[], baseLr: number): void {
    const { beta1, beta2, eps } = this.o;
    this.p.forEach((p, k) => {
      const g = grads[k];
      if (!g) return;
      const t = ++this.steps[k];
      const bc1 = 1 - beta1 ** t;
      const bc2 = 1 - beta2 ** t;
      const { lrMult, decayMult } = this.o.multipliers?.[k] ?? { lrMult: 1, decayMult: 1 };
      const lr = baseLr * lrMult, wd = this.o.wd * decayMult;
      const m = this.m[k], v = this.v[k];
      for (let i = 0; i < p.length; i++) {
        p[i] *= 1 - lr * wd;
        m[i] = beta1 * m[i] + (1 - beta1) * g[i];
        v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
        p[i] -= (lr / bc1) * m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + eps);
      }
    });
  }
}
