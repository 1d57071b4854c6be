// Pixel sets to paint and label: polygons (scan-converted), thick polylines, blobs, and masks.
// A region visits each of its pixels inside a w×h frame; overlapping parts may be visited twice,
// which is harmless because painting and labelling are idempotent.

import type { Random } from "../random.ts";

export type PixelFn = (x: number, y: number) => void;

export interface Region {
  forEach(w: number, h: number, fn: PixelFn): void;
}

/** Flat [x0, y0, x1, y1, …] polygon, filled by the even-odd rule at pixel centres. */
export function polygon(points: readonly number[]): Region {
  return {
    forEach(w, h, fn) {
      let ymin = Infinity, ymax = -Infinity;
      for (let i = 1; i < points.length; i += 2) {
        ymin = Math.min(ymin, points[i]);
        ymax = Math.max(ymax, points[i]);
      }
      const y0 = Math.max(0, Math.ceil(ymin - 0.5)), y1 = Math.min(h - 1, Math.floor(ymax - 0.5));
      const n = points.length / 2, xs: number[] = [];
      for (let y = y0; y <= y1; y++) {
        const cy = y + 0.5;
        xs.length = 0;
        for (let i = 0, j = n - 1; i < n; j = i++) {
          const xi = points[2 * i],
            yi = points[2 * i + 1],
            xj = points[2 * j],
            yj = points[2 * j + 1];
          if ((yi > cy) !== (yj > cy)) xs.push(xi + ((cy - yi) / (yj - yi)) * (xj - xi));
        }
        xs.sort((p, q) => p - q);
        for (let k = 0; k + 1 < xs.length; k += 2) {
          const xa = Math.max(0, Math.ceil(xs[k] - 0.5)),
            xb = Math.min(w - 1, Math.floor(xs[k + 1] - 0.5));
          for (let x = xa; x <= xb; x++) fn(x, y);
        }
      }
    },
  };
}

/** Rectangle of length × width centred at (cx, cy), its length along `angle` (radians). */
export function rotatedRect(cx: number, cy: number, length: number, width: number, angle: number) {
  const ux = Math.cos(angle), uy = Math.sin(angle), hl = length / 2, hw = width / 2;
  const pts = [];
  for (const [a, b] of [[-1, -1], [1, -1], [1, 1], [-1, 1]]) {
    pts.push(cx + a * hl * ux - b * hw * uy, cy + a * hl * uy + b * hw * ux);
  }
  return pts;
}

/** A wobbly closed outline: radius r·(1 + Σ aₖ sin(kθ + φₖ)); shape fixed by `shape`. */
export interface BlobShape {
  amps: number[];
  phases: number[];
  stretch: number;
  angle: number;
}

export function randomBlobShape(random: Random, wobble: number): BlobShape {
  const amps = [], phases = [];
  for (let k = 2; k <= 6; k++) {
    amps.push((wobble * (random() - 0.3)) / k);
    phases.push(random() * 2 * Math.PI);
  }
  return { amps, phases, stretch: 1 + random() * 0.8, angle: random() * Math.PI };
}

/** Blob polygon of mean radius r; same shape at two radii gives a ring (core and outline). */
export function blob(cx: number, cy: number, r: number, shape: BlobShape, vertices = 48): number[] {
  const pts: number[] = [];
  const ca = Math.cos(shape.angle), sa = Math.sin(shape.angle);
  const sx = Math.sqrt(shape.stretch), sy = 1 / sx;
  for (let i = 0; i < vertices; i++) {
    const t = (2 * Math.PI * i) / vertices;
    let rr = 1;
    shape.amps.forEach((a, k) => rr += a * Math.sin((k + 2) * t + shape.phases[k]));
    const px = Math.max(0.2, rr) * r * Math.cos(t) * sx,
      py = Math.max(0.2, rr) * r * Math.sin(t) * sy;
    pts.push(cx + px * ca - py * sa, cy + px * sa + py * ca);
  }
  return pts;
}

/** Union of regions (pixels in overlaps are visited more than once). */
export function union(regions: readonly Region[]): Region {
  return { forEach: (w, h, fn) => regions.forEach((r) => r.forEach(w, h, fn)) };
}

/** A thick polyline: one rectangle per segment and a square joint at each inner vertex. */
export function thickLine(points: readonly number[], width: number): Region {
  const parts: Region[] = [];
  for (let i = 0; i + 3 < points.length; i += 2) {
    const [x0, y0, x1, y1] = points.slice(i, i + 4);
    const len = Math.hypot(x1 - x0, y1 - y0);
    if (len === 0) continue;
    const angle = Math.atan2(y1 - y0, x1 - x0);
    // Extend by half the width so consecutive segments overlap at the joints.
    parts.push(polygon(rotatedRect((x0 + x1) / 2, (y0 + y1) / 2, len + width, width, angle)));
  }
  return union(parts);
}

/** A byte mask as a region (non-zero pixels). */
export function maskRegion(mask: Uint8Array, maskWidth: number): Region {
  return {
    forEach(w, h, fn) {
      for (let y = 0; y < h; y++) {
        const row = y * maskWidth;
        for (let x = 0; x < w; x++) if (mask[row + x]) fn(x, y);
      }
    },
  };
}

/** Rasterise a region into a fresh mask. */
export function toMask(region: Region, w: number, h: number): Uint8Array {
  const m = new Uint8Array(w * h);
  region.forEach(w, h, (x, y) => m[y * w + x] = 1);
  return m;
}

/** Pixels of `region` not set in `mask`. */
export function minus(region: Region, mask: Uint8Array, maskWidth: number): Region {
  return {
    forEach: (w, h, fn) => region.forEach(w, h, (x, y) => !mask[y * maskWidth + x] && fn(x, y)),
  };
}
