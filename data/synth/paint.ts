// Painting regions into images. Frame images are size×size and sample materials at world
// coordinates (frame + margin); the world canvas is painted with offset 0.

import type { Material } from "./materials.ts";
import { polygon, type Region } from "./region.ts";
import type { Scene } from "./scene.ts";

/** A target image and where its pixel (0, 0) lies in world coordinates. */
export interface Target {
  rgb: Float32Array;
  width: number;
  offset: number;
  /** Optional per-pixel tag written where painted (the background's parcel map). */
  tags?: Uint16Array;
}

export function frameTarget(s: Scene, rgb: Float32Array): Target {
  return { rgb, width: s.size, offset: s.margin };
}

export function paint(s: Scene, t: Target, region: Region, mat: Material): void {
  const { rgb, width, offset, tags } = t, W = s.world;
  region.forEach(width, width, (x, y) => {
    const wx = x + offset, wy = y + offset, i = y * width + x;
    mat(wx, wy, wy * W + wx, rgb, 3 * i);
    if (tags) tags[i] = 0;
  });
}

export function darken(t: Target, region: Region, factor: number): void {
  const { rgb, width } = t;
  region.forEach(width, width, (x, y) => {
    const o = 3 * (y * width + x);
    rgb[o] *= factor;
    rgb[o + 1] *= factor;
    rgb[o + 2] *= factor;
  });
}

/** Translate a flat polygon. */
export function shifted(points: readonly number[], dx: number, dy: number): number[] {
  return points.map((v, i) => v + (i % 2 === 0 ? dx : dy));
}

/** A building seen from above: its shadow (not part of the footprint), then its roof. */
export function drawBuilding(
  s: Scene,
  t: Target,
  footprint: readonly number[],
  roofMat: Material,
  height: number,
): void {
  const [dx, dy] = s.shadow;
  darken(t, polygon(shifted(footprint, dx * height, dy * height)), 0.55);
  paint(s, t, polygon(footprint), roofMat);
}
