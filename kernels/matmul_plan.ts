// The matmul planner: which tile and reduction split a product C[batch][m, n] (summed over `r`
// reduced batch entries of depth k) runs with, by estimated time. kernels/matmul.ts generates the
// WGSL for the chosen tile; this file holds the candidates and the cost model (from H200 sweeps).

import { TILE_LARGE, type TileConfig } from "./matmul.ts";
import { activeProfile } from "./device_profile.ts";

/** Candidate tiles, largest first, with a relative speed per output. Measured on an H200 (8192³
 * and 4096³, two-stage versions): 64×64/4×4 ran as fast per FLOP as 128×128/8×8, 64×128/4×8 at
 * 0.75; the one-stage 128×128 default then ran 1.43× faster than its two-stage form, which the
 * smaller tiles were not measured in. The rest are guesses that prefer more outputs per thread. */
const CANDIDATES: { tile: TileConfig; speed: number }[] = [
  { tile: TILE_LARGE, speed: 1 },
  { tile: { ...TILE_LARGE, bm: 64, bn: 64, tm: 4, tn: 4 }, speed: 0.75 },
  { tile: { ...TILE_LARGE, bm: 64, tm: 4 }, speed: 0.6 },
  { tile: { ...TILE_LARGE, bn: 64, tn: 4 }, speed: 0.6 },
  { tile: { ...TILE_LARGE, bm: 32, bn: 128, tm: 4, tn: 4 }, speed: 0.55 },
  { tile: { ...TILE_LARGE, bm: 128, bn: 32, tm: 4, tn: 4 }, speed: 0.55 },
  { tile: { ...TILE_LARGE, bm: 32, bn: 32, tm: 4, tn: 4 }, speed: 0.45 },
  { tile: { ...TILE_LARGE, bm: 16, bn: 64, tm: 4, tn: 4 }, speed: 0.4 },
  { tile: { ...TILE_LARGE, bm: 64, bn: 16, tm: 4, tn: 4 }, speed: 0.4 },
];
/** With the profile's matmulSmallTiles: tiles for products only 16 or 32 wide each way, whose
 * long reductions split over many workgroups (16–32 threads each); speeds are guesses. */
const SMALL_CANDIDATES: { tile: TileConfig; speed: number }[] = [
  { tile: { ...TILE_LARGE, bm: 16, bn: 32, tm: 4, tn: 4 }, speed: 0.35 },
  { tile: { ...TILE_LARGE, bm: 32, bn: 16, tm: 4, tn: 4 }, speed: 0.35 },
  { tile: { ...TILE_LARGE, bm: 16, bn: 16, tm: 4, tn: 4 }, speed: 0.3 },
];

/** Reductions this shallow are bound by writing the output, not by the tile's arithmetic: in
 * an H200 sweep of TinyCD's 1×1 convs (K 24–64, bench/results/conv_sweep_s6_h200.txt) every tile
 * shape ran at about the same time per padded multiply-add, so the least padding wins, with
 * 8-deep slabs where 16 would pad K (24 → 32: 0.322 ms on 128×128×16 against 0.159–0.166 on
 * 32×128×8 and 16×64×8 for 144 rows; 8-deep slabs ran ~7 % slower where K divides by 16). */
const SHALLOW_K = 64;
const SHALLOW_CANDIDATES: { tile: TileConfig; speed: number }[] = [
  [64, 128, 4, 8],
  [32, 128, 4, 4],
  [128, 128, 8, 8],
  [64, 64, 4, 4],
  [16, 64, 4, 4],
  [128, 64, 8, 4],
  [128, 32, 4, 4],
  [32, 32, 4, 4],
  [64, 16, 4, 4],
].flatMap(([bm, bn, tm, tn]) =>
  [16, 8].map((bk) => ({
    tile: { ...TILE_LARGE, bm, bn, tm, tn, bk },
    speed: bk === 16 ? 1 : 0.93,
  }))
);

/** Threads that keep the GPU busy (132 SMs × 512 on an H100/H200): the device profile's
 * (kernels/device_profile.ts); fewer leave SMs idle. */
const BUSY_THREADS = () => activeProfile().busyThreads;
/** Time of one partial-sum element (written, then read back by splitSumKernel) in FMA times:
 * 8 bytes at ~4.8 TB/s against 2 FLOP at ~43 TFLOP/s is about 36. */
const SPLIT_ELEMENT_COST = 40;
const MAX_SPLIT = 1024;

export interface MatmulPlan {
  tile: TileConfig;
  split: number;
}

/** Pick a tile and a split of the reduction for C[batch][m, n] summed over `r` reduced batch
 * entries of depth k: the least estimated time, where padded work runs at the tile's speed,
 * a launch too small to fill the GPU runs slower (by fill^matmulFillExponent, linear by
 * default), and a split pays for its
 * partial sums. Long reductions into few tiles get split so that more workgroups share them. */
export function planMatmul(m: number, n: number, k: number, batch = 1, r = 1): MatmulPlan {
  let best: MatmulPlan & { cost: number } | null = null;
  const deep = activeProfile().matmulSmallTiles ? [...CANDIDATES, ...SMALL_CANDIDATES] : CANDIDATES;
  for (const { tile, speed } of k * r <= SHALLOW_K ? SHALLOW_CANDIDATES : deep) {
    const tiles = Math.ceil(m / tile.bm) * Math.ceil(n / tile.bn) * batch;
    const threads = (tile.bm / tile.tm) * (tile.bn / tile.tn);
    const slabs = r * Math.ceil(k / tile.bk);
    const fill1 = (tiles * threads) / BUSY_THREADS();
    let split = 1;
    if (fill1 < activeProfile().matmulSplitBelowFill && slabs >= 16) {
      split = Math.max(1, Math.min(MAX_SPLIT, Math.ceil(1 / fill1), Math.floor(slabs / 8)));
      split = Math.ceil(slabs / Math.ceil(slabs / split)); // no empty part
    }
    const fill = Math.min(1, fill1 * split);
    const work = tiles * tile.bm * tile.bn * slabs * tile.bk;
    const cost = work / (speed * fill ** activeProfile().matmulFillExponent) +
      (split > 1 ? split * m * n * batch * SPLIT_ELEMENT_COST : 0);
    if (!best || cost < best.cost) best = { tile, split, cost };
  }
  return { tile: best!.tile, split: best!.split };
}
