// Differences between the dates that are not change and must not be labelled: misregistration
// (date 2 cut from the world a pixel or two off), season (vegetation tint per field), illumination
// (gain, offset, colour cast) and sensor noise. Also the final rounding to 8-bit pixels.

import { type Random, uniform } from "../random.ts";
import type { Background } from "./background.ts";
import type { Rgb, Scene } from "./scene.ts";

/** Cut the frame at (margin + dx, margin + dy) from the world; optionally apply the season. */
export function cutFrame(
  s: Scene,
  bg: Background,
  dx: number,
  dy: number,
  seasonal: boolean,
): Float32Array {
  const S = s.size, W = s.world, out = new Float32Array(S * S * 3), src = bg.rgb;
  const season = Float32Array.from(bg.season.flat());
  for (let y = 0; y < S; y++) {
    const k0 = (y + s.margin + dy) * W + s.margin + dx;
    if (!seasonal) {
      out.set(src.subarray(3 * k0, 3 * (k0 + S)), 3 * y * S);
      continue;
    }
    for (let x = 0, o = 3 * y * S, k = k0; x < S; x++, o += 3, k++) {
      const f = 3 * bg.parcelOf[k];
      out[o] = src[3 * k] * season[f];
      out[o + 1] = src[3 * k + 1] * season[f + 1];
      out[o + 2] = src[3 * k + 2] * season[f + 2];
    }
  }
  return out;
}

export interface Lighting {
  gain: number;
  offset: number;
  tint: Rgb;
}

/** Date 2 differs more than date 1, which gets only a mild variation. */
export function randomLighting(random: Random, strong: boolean): Lighting {
  const g = strong ? 0.16 : 0.05, o = strong ? 14 : 5, t = strong ? 0.07 : 0.02;
  return {
    gain: uniform(random, 1 - g, 1 + g),
    offset: uniform(random, -o, o),
    tint: [
      uniform(random, 1 - t, 1 + t),
      uniform(random, 1 - t, 1 + t),
      uniform(random, 1 - t, 1 + t),
    ],
  };
}

export function applyLighting(rgb: Float32Array, l: Lighting): void {
  for (let i = 0; i < rgb.length; i += 3) {
    rgb[i] = rgb[i] * l.gain * l.tint[0] + l.offset;
    rgb[i + 1] = rgb[i + 1] * l.gain * l.tint[1] + l.offset;
    rgb[i + 2] = rgb[i + 2] * l.gain * l.tint[2] + l.offset;
  }
}

/** Add Gaussian noise of std `sigma` and round to 8-bit (a normal table keeps this fast). */
export function addNoiseToBytes(rgb: Float32Array, sigma: number, random: Random): Uint8Array {
  const table = new Float32Array(4096);
  for (let i = 0; i < table.length; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - random())), t = 2 * Math.PI * random();
    table[i] = r * Math.cos(t) * sigma;
    table[i + 1] = r * Math.sin(t) * sigma;
  }
  let state = (random() * 4294967296) >>> 0 || 1;
  const out = new Uint8Array(rgb.length);
  for (let i = 0; i < rgb.length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    const v = rgb[i] + table[(state >>> 0) & 4095] + 0.5;
    out[i] = v < 0 ? 0 : v > 255 ? 255 : v;
  }
  return out;
}
