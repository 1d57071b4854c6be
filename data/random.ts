// Seeded randomness for the data layer. Every random choice (shuffle order, crop offsets,
// synthetic scenes) derives from an integer seed so that runs can be reproduced and resumed.

import { Random as Generator } from "../engine/random.ts";

/** A generator of uniform numbers in [0, 1). */
export type Random = () => number;

/** The engine's seeded generator (mulberry32) as a function. */
export function mulberry32(seed: number): Random {
  const g = new Generator(seed);
  return () => g.next();
}

/** Mix several integers into one 32-bit seed, so (seed, epoch, index) streams don't collide. */
export function hashSeed(...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const p of parts) {
    // Fold in both halves so seeds above 2^32 still matter.
    const lo = p >>> 0, hi = Math.floor(p / 4294967296) >>> 0;
    for (const v of [lo, hi]) {
      h = Math.imul(h ^ v, 0x01000193);
      h ^= h >>> 15;
      h = Math.imul(h, 0x85ebca6b);
      h ^= h >>> 13;
    }
  }
  return h >>> 0;
}

/** Fisher–Yates shuffle in place. */
export function shuffleInPlace<T>(items: T[], random: Random): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = items[i];
    items[i] = items[j];
    items[j] = t;
  }
  return items;
}

/** Integer in [lo, hi] inclusive. */
export function randInt(random: Random, lo: number, hi: number): number {
  return lo + Math.floor(random() * (hi - lo + 1));
}

/** Uniform number in [lo, hi). */
export function uniform(random: Random, lo: number, hi: number): number {
  return lo + (hi - lo) * random();
}
