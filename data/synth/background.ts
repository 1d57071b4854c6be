// The unchanged landscape both dates share, drawn once on the world canvas: a patchwork of
// fields (crops, grass, soil, woodland, a village) in rotated parcels with paths between them,
// plus static roads, ponds and houses, so every object type also appears unchanged.

import { randInt, type Random, uniform } from "../random.ts";
import * as M from "./materials.ts";
import { drawBuilding, paint, type Target } from "./paint.ts";
import { blob, polygon, randomBlobShape, rotatedRect, thickLine } from "./region.ts";
import type { Rgb, Scene } from "./scene.ts";

interface Parcel {
  u0: number;
  v0: number;
  u1: number;
  v1: number;
  kind: string;
  mat: M.Material;
  border: number;
}

export interface Background {
  /** World canvas, RGB floats. */
  rgb: Float32Array;
  /** Parcel index + 1 per world pixel, 0 where static objects cover it. */
  parcelOf: Uint16Array;
  /** Seasonal colour factor per parcel index + 1, for date 2 (crops grow or are harvested). */
  season: Rgb[];
}

const KINDS: [string, number][] = [
  ["crop", 0.42],
  ["grass", 0.16],
  ["soil", 0.11],
  ["forest", 0.16],
  ["village", 0.09],
  ["greenhouse", 0.03],
  ["pv", 0.03],
];

function pick<T>(random: Random, items: [T, number][]): T {
  let u = random() * items.reduce((a, [, w]) => a + w, 0);
  for (const [item, w] of items) if ((u -= w) < 0) return item;
  return items[items.length - 1][0];
}

function materialFor(s: Scene, kind: string): M.Material {
  const r = s.random, p = s.palette;
  switch (kind) {
    case "crop":
      return M.crop(
        s,
        p.crop[randInt(r, 0, p.crop.length - 1)],
        s.angle + (r() < 0.5 ? 0 : Math.PI / 2),
        uniform(r, 3, 7),
      );
    case "grass":
    case "village":
      return M.grass(s);
    case "soil":
      return M.soil(s);
    case "forest":
      return M.forest(s);
    case "greenhouse":
      return M.greenhouse(s, s.angle, uniform(r, 7, 11));
    default:
      return M.photovoltaic(s.angle, uniform(r, 7, 10), M.grass(s));
  }
}

/** Split the rotated bounding box into parcels (binary space partition). */
function parcels(s: Scene, u0: number, v0: number, u1: number, v1: number, out: Parcel[]) {
  const r = s.random, minSide = Math.max(20, s.size / 9), maxSide = Math.max(40, s.size / 2.5);
  const w = u1 - u0, h = v1 - v0;
  const splitU = w >= h ? w > maxSide || (w > 2 * minSide && r() < 0.5) : false;
  const splitV = !splitU && (h > maxSide || (h > 2 * minSide && r() < 0.5));
  if (splitU) {
    const m = u0 + w * uniform(r, 0.3, 0.7);
    parcels(s, u0, v0, m, v1, out);
    parcels(s, m, v0, u1, v1, out);
  } else if (splitV) {
    const m = v0 + h * uniform(r, 0.3, 0.7);
    parcels(s, u0, v0, u1, m, out);
    parcels(s, u0, m, u1, v1, out);
  } else {
    const kind = pick(r, KINDS);
    out.push({
      u0,
      v0,
      u1,
      v1,
      kind,
      mat: materialFor(s, kind),
      border: r() < 0.6 ? uniform(r, 0.8, 2.2) : 0,
    });
  }
}

function seasonFactor(s: Scene, kind: string): Rgb {
  const r = s.random;
  if (kind === "crop") {
    const g = uniform(r, -0.15, 0.15); // greener or yellower
    return [1 - g * 0.6, 1 + g * 0.4, 1 - g];
  }
  if (kind === "grass" || kind === "village" || kind === "forest") {
    const g = uniform(r, -0.07, 0.07);
    return [1 - g, 1 + g * 0.5, 1 - g];
  }
  return [1, 1, 1];
}

export function renderBackground(s: Scene): Background {
  const W = s.world, ca = Math.cos(s.angle), sa = Math.sin(s.angle);
  // Bounding box of the world square in rotated (u, v) coordinates.
  const us = [0, W * ca, W * sa, W * (ca + sa)], vs = [0, -W * sa, W * ca, W * (ca - sa)];
  const list: Parcel[] = [];
  parcels(
    s,
    Math.min(...us) - 1,
    Math.min(...vs) - 1,
    Math.max(...us) + 1,
    Math.max(...vs) + 1,
    list,
  );
  const rgb = new Float32Array(W * W * 3), parcelOf = new Uint16Array(W * W);
  const pathMat = M.textured(s, s.palette.soil.map((v) => v + 22) as Rgb, 20, 16);
  const inside = (p: Parcel, u: number, v: number) =>
    u >= p.u0 && u < p.u1 && v >= p.v0 && v < p.v1;
  let idx = 0;
  for (let y = 0; y < W; y++) {
    for (let x = 0; x < W; x++) {
      const u = x * ca + y * sa, v = -x * sa + y * ca, k = y * W + x;
      // Neighbouring pixels mostly share a parcel: try the last one before searching (tens).
      if (!inside(list[idx], u, v)) {
        idx = 0;
        while (idx < list.length - 1 && !inside(list[idx], u, v)) idx++;
      }
      const p = list[idx];
      const edge = Math.min(u - p.u0, p.u1 - u, v - p.v0, p.v1 - v);
      if (edge < p.border) pathMat(x, y, k, rgb, 3 * k);
      else p.mat(x, y, k, rgb, 3 * k);
      parcelOf[k] = idx + 1;
    }
  }
  const season: Rgb[] = [[1, 1, 1], ...list.map((p) => seasonFactor(s, p.kind))];
  const target: Target = { rgb, width: W, offset: 0, tags: parcelOf };
  for (const p of list) if (p.kind === "village") drawVillage(s, target, p);
  drawStaticExtras(s, target);
  return { rgb, parcelOf, season };
}

/** Rows of houses inside a village parcel. */
function drawVillage(s: Scene, t: Target, p: Parcel) {
  const r = s.random, ca = Math.cos(s.angle), sa = Math.sin(s.angle);
  const bw = uniform(r, 9, 18), bh = uniform(r, 7, 12), gap = uniform(r, 4, 9);
  for (let u = p.u0 + gap + bw / 2; u < p.u1 - bw / 2; u += bw + gap) {
    for (let v = p.v0 + gap + bh / 2; v < p.v1 - bh / 2; v += bh + gap) {
      if (r() < 0.25) continue;
      const x = u * ca - v * sa, y = u * sa + v * ca;
      if (x < -bw || y < -bw || x > s.world + bw || y > s.world + bw) continue;
      const fp = rotatedRect(x, y, bw, bh, s.angle);
      const c = s.palette.roofs[randInt(r, 0, s.palette.roofs.length - 1)];
      drawBuilding(s, t, fp, M.roof(c, x, y, s.angle, r() < 0.3), uniform(r, 2, 5));
    }
  }
}

/** A road across the scene and a pond, each present in both dates. */
function drawStaticExtras(s: Scene, t: Target) {
  const r = s.random, W = s.world;
  if (r() < 0.5) {
    const a = s.angle + (r() < 0.5 ? 0 : Math.PI / 2), cx = uniform(r, 0, W), cy = uniform(r, 0, W);
    const L = W * 1.5, dx = Math.cos(a) * L / 2, dy = Math.sin(a) * L / 2;
    const mat = r() < 0.6 ? M.asphalt(s) : M.concrete(s);
    paint(s, t, thickLine([cx - dx, cy - dy, cx + dx, cy + dy], uniform(r, 5, 12)), mat);
  }
  if (r() < 0.2) {
    const rad = uniform(r, 8, Math.max(10, s.size / 6));
    paint(
      s,
      t,
      polygon(blob(uniform(r, 0, W), uniform(r, 0, W), rad, randomBlobShape(r, 0.8))),
      M.water(s),
    );
  }
}
