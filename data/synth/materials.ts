// Surface appearances. A material writes one RGB pixel (0–255 floats) for a world position;
// texture comes from the scene's noise fields, so the same material looks the same in both dates.

import type { Rgb, Scene } from "./scene.ts";

/** Paint the pixel at world (x, y), world index k, into out[o..o+2]. */
export type Material = (x: number, y: number, k: number, out: Float32Array, o: number) => void;

/** sin(2π·t) for t in [0, 1), tabulated: per-pixel Math.sin was a visible share of the time. */
const SINE = Float32Array.from({ length: 1024 }, (_, i) => Math.sin((2 * Math.PI * i) / 1024));
function sinTurns(t: number): number {
  return SINE[Math.floor((t - Math.floor(t)) * 1024)];
}

function put(out: Float32Array, o: number, r: number, g: number, b: number) {
  out[o] = r;
  out[o + 1] = g;
  out[o + 2] = b;
}

/** Base colour plus mid- and fine-scale brightness variation. */
export function textured(s: Scene, c: Rgb, midAmp: number, fineAmp: number): Material {
  const { mid, fine } = s;
  return (_x, _y, k, out, o) => {
    const d = (mid[k] - 0.5) * midAmp + (fine[k] - 0.5) * fineAmp;
    put(out, o, c[0] + d, c[1] + d, c[2] + d * 0.9);
  };
}

export const soil = (s: Scene, c = s.palette.soil) => textured(s, c, 50, 26);
export const grass = (s: Scene, c = s.palette.grass) => textured(s, c, 36, 22);
export const concrete = (s: Scene, c = s.palette.concrete) => textured(s, c, 18, 14);
export const asphalt = (s: Scene, c = s.palette.asphalt) => textured(s, c, 10, 10);

/** Crop rows: stripes of `period` px along `angle`. */
export function crop(s: Scene, c: Rgb, angle: number, period: number): Material {
  const { mid, fine } = s, cx = Math.cos(angle) / period, cy = Math.sin(angle) / period;
  return (x, y, k, out, o) => {
    const stripe = sinTurns(x * cx + y * cy);
    const f = 0.9 + 0.1 * stripe, d = (mid[k] - 0.5) * 30 + (fine[k] - 0.5) * 10;
    put(out, o, c[0] * f + d, c[1] * f + d, c[2] * f + d);
  };
}

/** Tree crowns: bright tops, dark gaps. */
export function forest(s: Scene, c = s.palette.forest): Material {
  const { mid, fine } = s;
  return (_x, _y, k, out, o) => {
    const t = fine[k] * 0.7 + mid[k] * 0.3;
    const f = t < 0.42 ? 0.55 : 0.8 + (t - 0.42) * 1.4;
    put(out, o, c[0] * f, c[1] * f, c[2] * f);
  };
}

export function water(s: Scene, c = s.palette.water): Material {
  const { coarse, fine } = s;
  return (_x, _y, k, out, o) => {
    const d = (coarse[k] - 0.5) * 22 + (fine[k] - 0.5) * 5;
    put(out, o, c[0] + d * 0.6, c[1] + d, c[2] + d);
  };
}

/** Cleared woodland: pale soil with scattered debris and stumps. */
export function cleared(s: Scene): Material {
  const { mid, fine } = s, c = s.palette.soil;
  return (_x, _y, k, out, o) => {
    const debris = fine[k] > 0.68 ? -45 : 0;
    const d = (mid[k] - 0.5) * 40 + (fine[k] - 0.5) * 20 + 12 + debris;
    put(out, o, c[0] + d, c[1] + d * 0.95, c[2] + d * 0.85);
  };
}

/** Dried-out lake bed: dark, greenish wet soil. */
export function mud(s: Scene): Material {
  const { mid, fine } = s, c = s.palette.soil;
  return (_x, _y, k, out, o) => {
    const d = (mid[k] - 0.5) * 30 + (fine[k] - 0.5) * 14;
    put(out, o, c[0] * 0.62 + d, c[1] * 0.7 + d, c[2] * 0.62 + d);
  };
}

/** Demolition site: grey-brown rubble. */
export function rubble(s: Scene): Material {
  const { fine, mid } = s, c = s.palette.soil;
  return (_x, _y, k, out, o) => {
    const d = (fine[k] - 0.5) * 60 + (mid[k] - 0.5) * 20;
    put(out, o, (c[0] + 150) / 2 + d, (c[1] + 148) / 2 + d, (c[2] + 144) / 2 + d);
  };
}

/** Greenhouses: long bright strips (`period` px across) with dark soil gaps between them. */
export function greenhouse(s: Scene, angle: number, period: number): Material {
  const { fine } = s, nx = -Math.sin(angle), ny = Math.cos(angle), gap = 1.6 / period;
  const c = s.palette.soil;
  return (x, y, k, out, o) => {
    const u = (x * nx + y * ny) / period, t = u - Math.floor(u);
    if (t < gap) {
      put(out, o, c[0] * 0.7, c[1] * 0.7, c[2] * 0.7);
      return;
    }
    const v = 200 + 40 * sinTurns((t - gap) / (2 * (1 - gap))) + (fine[k] - 0.5) * 10;
    put(out, o, v, v + 2, v + 6);
  };
}

/** Photovoltaic arrays: dark blue panel rows with a light cell grid and ground between rows. */
export function photovoltaic(angle: number, rowPeriod: number, ground: Material): Material {
  const ux = Math.cos(angle), uy = Math.sin(angle), cell = 5;
  return (x, y, k, out, o) => {
    const across = (-x * uy + y * ux) / rowPeriod, t = across - Math.floor(across);
    if (t > 0.72) {
      ground(x, y, k, out, o);
      return;
    }
    const along = (x * ux + y * uy) / cell, a = along - Math.floor(along);
    const line = a < 0.14 || t < 0.05 || Math.abs(t - 0.36) < 0.03;
    if (line) put(out, o, 78, 88, 116);
    else put(out, o, 28 + t * 10, 38 + t * 10, 74 + t * 16);
  };
}

/** A gable roof: two halves split along the ridge at (cx, cy) in direction `angle`. */
export function roof(c: Rgb, cx: number, cy: number, angle: number, flat: boolean): Material {
  const nx = -Math.sin(angle), ny = Math.cos(angle);
  return (x, y, _k, out, o) => {
    const side = (x + 0.5 - cx) * nx + (y + 0.5 - cy) * ny;
    const f = flat ? 1 : side > 0 ? 1.06 : 0.8;
    put(out, o, c[0] * f, c[1] * f, c[2] * f);
  };
}
