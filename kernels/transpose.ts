// Batched 2-D transpose through a shared-memory tile, so that both the reads and the writes are
// contiguous across a warp (a plain strided copy reads one element per cache line here).
// Optional flips of either axis turn it into rot90 by ±90°.

import { cached, type Kernel, kernel, MAX_GROUPS, ro, rw, type StorageType } from "./common.ts";

export interface TransposeSpec {
  batch: number;
  /** Input [batch, rows, cols] → output [batch, cols, rows]. */
  rows: number;
  cols: number;
  /** out[b, c, r] reads input row rows−1−r instead of r (and likewise for columns). */
  flipRows?: boolean;
  flipCols?: boolean;
  type?: StorageType;
}

const TILE = 32;
const ROWS_PER_PASS = 8;

/** Whether the launch fits the per-dimension workgroup limit (else use a strided copy). */
export function transposeFits(s: TransposeSpec): boolean {
  return Math.ceil(s.cols / TILE) <= MAX_GROUPS && Math.ceil(s.rows / TILE) <= MAX_GROUPS &&
    s.batch <= MAX_GROUPS;
}

function transposeKernelGen(s: TransposeSpec): Kernel {
  const type = s.type ?? "f32";
  const row = s.flipRows ? `${s.rows - 1}u - r` : "r";
  const col = s.flipCols ? `${s.cols - 1}u - c` : "c";
  return kernel(
    "transpose",
    [ro("x", type), rw("out", type)],
    [Math.ceil(s.cols / TILE), Math.ceil(s.rows / TILE), s.batch],
    `// One padding column keeps the column-wise reads of the tile free of bank conflicts.
var<workgroup> tile: array<array<${type}, ${TILE + 1}>, ${TILE}>;
@compute @workgroup_size(${TILE}, ${ROWS_PER_PASS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let plane = wid.z * ${s.rows * s.cols}u;
  let r0 = wid.y * ${TILE}u;
  let c0 = wid.x * ${TILE}u;
  for (var k = 0u; k < ${TILE}u; k += ${ROWS_PER_PASS}u) {
    let r = r0 + lid.y + k;
    let c = c0 + lid.x;
    if (r < ${s.rows}u && c < ${s.cols}u) {
      tile[lid.y + k][lid.x] = x[plane + (${row}) * ${s.cols}u + ${col}];
    }
  }
  workgroupBarrier();
  for (var k = 0u; k < ${TILE}u; k += ${ROWS_PER_PASS}u) {
    let c = c0 + lid.y + k;
    let r = r0 + lid.x;
    if (r < ${s.rows}u && c < ${s.cols}u) { out[plane + c * ${s.rows}u + r] = tile[lid.x][lid.y + k]; }
  }
}`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const transposeKernel = cached(transposeKernelGen);
