// Smooth random fields for textures and organic shapes: value noise and its fractal sum.

import type { Random } from "../random.ts";

/** Value noise in [0, 1] on a w×h grid: random values every `cell` pixels, smoothly blended. */
export function valueNoise(w: number, h: number, cell: number, random: Random): Float32Array {
  const c = Math.max(1, cell);
  const ox = random() * c, oy = random() * c; // so lattice points don't sit on pixel 0
  const gw = Math.ceil((w + ox) / c) + 2, gh = Math.ceil((h + oy) / c) + 2;
  const lattice = new Float32Array(gw * gh);
  for (let i = 0; i < lattice.length; i++) lattice[i] = random();
  const ix = new Int32Array(w), tx = new Float32Array(w);
  for (let x = 0; x < w; x++) {
    const g = (x + ox) / c, i = Math.floor(g), t = g - i;
    ix[x] = i;
    tx[x] = t * t * (3 - 2 * t);
  }
  const out = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    const g = (y + oy) / c, j = Math.floor(g), t = g - j, ty = t * t * (3 - 2 * t);
    const r0 = j * gw, r1 = r0 + gw, row = y * w;
    for (let x = 0; x < w; x++) {
      const i = ix[x], s = tx[x];
      const top = lattice[r0 + i] + (lattice[r0 + i + 1] - lattice[r0 + i]) * s;
      const bot = lattice[r1 + i] + (lattice[r1 + i + 1] - lattice[r1 + i]) * s;
      out[row + x] = top + (bot - top) * ty;
    }
  }
  return out;
}

/** Sum of `octaves` value noises, each half the cell size and `gain` times the amplitude. */
export function fbm(
  w: number,
  h: number,
  cell: number,
  octaves: number,
  random: Random,
  gain = 0.5,
): Float32Array {
  const out = new Float32Array(w * h);
  let amp = 1, total = 0, c = cell;
  for (let o = 0; o < octaves; o++) {
    const n = valueNoise(w, h, c, random);
    for (let i = 0; i < out.length; i++) out[i] += amp * n[i];
    total += amp;
    amp *= gain;
    c = Math.max(1, c / 2);
  }
  for (let i = 0; i < out.length; i++) out[i] /= total;
  return out;
}

/** The value below which about `fraction` of the field lies (histogram quantile). */
export function quantile(field: Float32Array, fraction: number): number {
  if (fraction <= 0) return Number.NEGATIVE_INFINITY;
  if (fraction >= 1) return Number.POSITIVE_INFINITY;
  let lo = Infinity, hi = -Infinity;
  for (const v of field) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const bins = 4096, counts = new Uint32Array(bins), scale = (bins - 1) / (hi - lo || 1);
  for (const v of field) counts[Math.floor((v - lo) * scale)]++;
  const want = fraction * field.length;
  let acc = 0;
  for (let i = 0; i < bins; i++) {
    acc += counts[i];
    if (acc >= want) return lo + (i + 1) / scale;
  }
  return hi;
}
