// The per-pair context every synthetic painter shares: frame geometry, noise fields, the palette
// of this region and season, and the light direction. World coordinates include a margin around
// the frame so that date 2 can be cut out a few pixels off (misregistration).

import { fbm } from "./noise.ts";
import { type Random, uniform } from "../random.ts";

export type Rgb = [number, number, number];

export interface Palette {
  soil: Rgb;
  crop: Rgb[];
  grass: Rgb;
  forest: Rgb;
  water: Rgb;
  concrete: Rgb;
  asphalt: Rgb;
  roofs: Rgb[];
}

export interface Scene {
  size: number;
  /** Extra pixels on each side of the frame in the world canvas. */
  margin: number;
  /** World canvas width = size + 2·margin. */
  world: number;
  random: Random;
  /** Noise fields over the world canvas, in [0, 1]: ~3 px, ~12 px and ~60 px features. */
  fine: Float32Array;
  mid: Float32Array;
  coarse: Float32Array;
  palette: Palette;
  /** Dominant orientation of fields and buildings (radians). */
  angle: number;
  /** Shadow direction (unit vector, away from the sun). */
  shadow: [number, number];
}

function jitter(random: Random, c: Rgb, amount: number): Rgb {
  return c.map((v) => v + uniform(random, -amount, amount)) as Rgb;
}

/** Colours vary by region (soil tone, crop types) so pairs don't all look alike. */
function makePalette(random: Random): Palette {
  const soilTone = uniform(random, -25, 25);
  return {
    soil: jitter(random, [158 + soilTone, 132 + soilTone, 104 + soilTone * 0.8], 8),
    crop: [
      jitter(random, [96, 128, 70], 14),
      jitter(random, [128, 146, 84], 14),
      jitter(random, [150, 150, 96], 14),
      jitter(random, [78, 108, 62], 10),
    ],
    grass: jitter(random, [118, 138, 88], 12),
    forest: jitter(random, [52, 76, 46], 8),
    water: jitter(random, [46, 72, 82], 12),
    concrete: jitter(random, [178, 176, 170], 12),
    asphalt: jitter(random, [84, 86, 90], 8),
    roofs: [
      jitter(random, [160, 78, 62], 12), // red tiles
      jitter(random, [72, 110, 170], 12), // blue steel
      jitter(random, [205, 205, 200], 10), // white/light grey
      jitter(random, [105, 104, 102], 10), // dark grey
    ],
  };
}

export function makeScene(size: number, margin: number, random: Random): Scene {
  const world = size + 2 * margin;
  const sun = uniform(random, 0, 2 * Math.PI);
  return {
    size,
    margin,
    world,
    random,
    fine: fbm(world, world, 3, 1, random),
    mid: fbm(world, world, 16, 2, random),
    coarse: fbm(world, world, 80, 1, random),
    palette: makePalette(random),
    angle: uniform(random, 0, Math.PI),
    shadow: [Math.cos(sun), Math.sin(sun)],
  };
}
