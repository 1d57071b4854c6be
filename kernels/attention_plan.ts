// Which form attention takes. The flash kernels (attention.ts) hold one query row per thread and
// stream keys through workgroup memory: no Lq × Lk matrix, but one multiply-add per value read
// from workgroup memory, and registers that grow with the head. The GEMM form materialises the
// scores a chunk at a time and runs its products on the register-tiled matmul kernel
// (engine/ops/attention_gemm.ts): more memory traffic, far more arithmetic per load. Long key
// ranges with wide heads (CGNet's 16,384 positions, HANet's 512-pixel rows) go to the GEMM;
// heads past the flash kernels' registers must.

import { MAX_HEAD } from "./attention.ts";
import type { AttentionSpec } from "./attention.ts";

/** Bytes of scores one chunk may hold (the backward holds two: P and dP). */
export const GEMM_CHUNK_BYTES = 512 * 2 ** 20;
/** Keys and queries from which the GEMM form is chosen when the heads also fit the flash
 * kernels (H100, bench/results/table2_h100_s13.md: MiT-b1's 16,384 and 1,024 queries
 * over 256 keys ran 1.9× and 2.3× faster as GEMMs; HANet's rows of 512 and 256 pixels, many
 * short heads, ran faster flash). */
export const GEMM_MIN_KEYS = 256;
export const GEMM_MIN_QUERIES = 1024;

/** A GEMM-form launch plan: `heads` heads per chunk, or one head's queries in `rows`-row slices
 * (`slices` of them) when one head's scores exceed the chunk. */
export interface GemmAttentionPlan {
  route: "gemm";
  heads: number;
  rows: number;
  slices: number;
}

export type AttentionPlan = { route: "flash" } | GemmAttentionPlan;

/** What the device allows: binding offsets' alignment and a binding's size (bytes). */
export interface AliasLimits {
  align: number;
  maxBinding: number;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Smallest count c ≥ 1 with c·len·4 bytes a multiple of `align`, for every len. */
function alignedUnit(align: number, lens: number[]): number {
  let unit = 1;
  for (const len of lens) {
    const need = align / gcd(align, len * 4);
    unit = (unit * need) / gcd(unit, need);
  }
  return unit;
}

/** The chunking of the GEMM form within `chunkBytes` of scores, or null where no chunking
 * both fits and keeps every chunk's offset aligned. */
export function gemmChunks(
  s: AttentionSpec,
  limits: AliasLimits,
  chunkBytes = GEMM_CHUNK_BYTES,
): GemmAttentionPlan | null {
  const budget = Math.min(chunkBytes, limits.maxBinding);
  const perHead = s.lq * s.lk * 4;
  if (s.bh * perHead <= budget) return { route: "gemm", heads: s.bh, rows: s.lq, slices: 1 };
  // Per-head offsets of q, k, v, the output and its row sums must all be aligned.
  const headUnit = alignedUnit(limits.align, [
    s.lq * s.d,
    s.lk * s.d,
    s.lk * s.dv,
    s.lq * s.dv,
    s.lq,
  ]);
  if (perHead <= budget) {
    const heads = Math.floor(Math.floor(budget / perHead) / headUnit) * headUnit;
    return heads > 0 ? { route: "gemm", heads, rows: s.lq, slices: 1 } : null;
  }
  if (s.bh > 1 && headUnit !== 1) return null;
  const rowUnit = alignedUnit(limits.align, [s.d, s.dv, 1]);
  const rows = Math.floor(Math.floor(budget / (s.lk * 4)) / rowUnit) * rowUnit;
  if (rows === 0) return null;
  return { route: "gemm", heads: 1, rows, slices: Math.ceil(s.lq / rows) };
}

/** The form for `s`: `force` where given (and possible), else the GEMM for heads the flash
 * kernels cannot hold and for long queries over long key ranges, else flash. */
export function planAttention(
  s: AttentionSpec,
  limits: AliasLimits,
  force?: "flash" | "gemm",
  chunkBytes?: number,
): AttentionPlan {
  const wide = s.d > MAX_HEAD || s.dv > MAX_HEAD;
  if (force === "flash" && wide) {
    throw new Error(`attention: heads ${s.d}, ${s.dv} exceed the flash kernels' ${MAX_HEAD}`);
  }
  const long = s.lk >= GEMM_MIN_KEYS && s.lq >= GEMM_MIN_QUERIES;
  if (force === "flash" || (!wide && force !== "gemm" && !long)) {
    return { route: "flash" };
  }
  const plan = gemmChunks(s, limits, chunkBytes);
  if (plan) return plan;
  if (wide || force === "gemm") {
    throw new Error(
      `attention: no aligned chunking of ${s.bh} heads × ${s.lq} × ${s.lk} scores within ` +
        `${chunkBytes ?? GEMM_CHUNK_BYTES} bytes`,
    );
  }
  return { route: "flash" };
}
