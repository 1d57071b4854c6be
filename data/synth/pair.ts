// One synthetic JL1-like pair: a shared landscape, labelled changes between the dates, and
// unlabelled nuisance (misregistration, season, illumination, noise). Deterministic in its seed.

import { mulberry32, randInt, uniform } from "../random.ts";
import { renderBackground } from "./background.ts";
import { drawTargetCar } from "./car_target.ts";
import { type ChangeCanvas, placeChanges } from "./changes.ts";
import { addNoiseToBytes, applyLighting, cutFrame, randomLighting } from "./nuisance.ts";
import { frameTarget } from "./paint.ts";
import { makeScene } from "./scene.ts";

/** Largest misregistration of date 2, in pixels. */
export const MAX_SHIFT = 2;

export interface SynthPair {
  size: number;
  /** size×size RGB, interleaved. */
  a: Uint8Array;
  b: Uint8Array;
  /** size×size, 0 or 255. */
  label: Uint8Array;
  car: number;
  targetCar: number;
  /** Change events placed, e.g. "building-new". */
  events: string[];
  /** Misregistration of date 2 in pixels. */
  shift: [number, number];
}

export function synthPair(seed: number, size: number, targetCar?: number): SynthPair {
  const random = mulberry32(seed);
  const target = targetCar ?? drawTargetCar(random);
  const s = makeScene(size, MAX_SHIFT, random);
  const bg = renderBackground(s);
  const shift: [number, number] = random() < 0.4
    ? [0, 0]
    : [randInt(random, -MAX_SHIFT, MAX_SHIFT), randInt(random, -MAX_SHIFT, MAX_SHIFT)];
  const a = cutFrame(s, bg, 0, 0, false);
  const b = cutFrame(s, bg, shift[0], shift[1], true);
  const canvas: ChangeCanvas = {
    s,
    a: frameTarget(s, a),
    b: frameTarget(s, b),
    label: new Uint8Array(size * size),
    changed: 0,
    events: [],
  };
  placeChanges(canvas, target);
  applyLighting(a, randomLighting(random, false));
  applyLighting(b, randomLighting(random, true));
  const a8 = addNoiseToBytes(a, uniform(random, 1, 3.5), random);
  const b8 = addNoiseToBytes(b, uniform(random, 1, 3.5), random);
  const label = canvas.label;
  for (let i = 0; i < label.length; i++) label[i] *= 255;
  return {
    size,
    a: a8,
    b: b8,
    label,
    car: canvas.changed / (size * size),
    targetCar: target,
    events: canvas.events,
    shift,
  };
}
