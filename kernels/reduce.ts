// Reductions (sum, max) over any set of axes. Small reductions run one thread per output;
// larger ones one workgroup per output with a shared-memory tree.

import {
  cached,
  groupGrid,
  type Kernel,
  kernel,
  kernel1d,
  prod,
  ro,
  rw,
  stridesOf,
} from "./common.ts";

export type ReduceOp = "sum" | "max";

export interface ReduceSpec {
  shape: readonly number[];
  axes: readonly number[];
  op: ReduceOp;
  /** Multiply the result by this (1/N turns sum into mean). */
  scale?: number;
  /** Split each output's reduction into this many chunks, one workgroup each, writing
   * [outputs, chunks] partials (finish with a reduction over the last axis). */
  chunks?: number;
}

const CHUNK_MIN = 16384;

/** How many chunks a reduction of n elements into `outputs` values should use: enough
 * workgroups to fill a GPU when there are few outputs and long rows (e.g. a bias gradient
 * over B·H·W), 1 otherwise. */
export function reduceChunks(outputs: number, n: number): number {
  if (outputs >= 1024 || n < 4 * CHUNK_MIN) return 1;
  return Math.min(Math.ceil(n / CHUNK_MIN), Math.ceil(4096 / outputs), 65535);
}

/** WGSL for the input offset of output `o` and reduced element `r` (both u32). */
function offsetExprs(
  shape: readonly number[],
  axes: readonly number[],
): { base: string; inner: string } {
  const strides = stridesOf(shape);
  const kept = shape.map((_, k) => k).filter((k) => !axes.includes(k));
  const red = [...axes].sort((a, b) => a - b);
  const expr = (dims: number[], v: string) => {
    const sub = dims.map((k) => shape[k]);
    const subStrides = stridesOf(sub);
    const terms: string[] = [];
    dims.forEach((k, j) => {
      if (shape[k] === 1) return;
      const c = j === 0
        ? `(${v} / ${subStrides[j]}u)`
        : `((${v} / ${subStrides[j]}u) % ${sub[j]}u)`;
      terms.push(`${c} * ${strides[k]}u`);
    });
    return terms.length ? terms.join(" + ") : "0u";
  };
  // Trailing contiguous reduction: the common case (rows), cheap index math.
  const trailing = red.length > 0 && red.every((k, j) => k === shape.length - red.length + j);
  if (trailing) {
    const n = prod(red.map((k) => shape[k]));
    return { base: `o * ${n}u`, inner: "r" };
  }
  return { base: expr(kept, "o"), inner: expr(red, "r") };
}

function reduceKernelGen(spec: ReduceSpec): Kernel {
  const { shape, axes, op } = spec;
  const n = prod(axes.map((k) => shape[k]));
  const outputs = prod(shape.filter((_, k) => !axes.includes(k)));
  const { base, inner } = offsetExprs(shape, axes);
  const init = op === "sum" ? "0.0" : "-3.4028235e38";
  const combine = (a: string, b: string) => op === "sum" ? `${a} + ${b}` : `max(${a}, ${b})`;
  const scale = spec.scale ?? 1;
  const fin = scale === 1 ? "acc" : `acc * ${scale}`;
  const bindings = [ro("x"), rw("out")];
  if (n <= 64 || outputs >= 65536) {
    return kernel1d(
      `reduce_${op}`,
      bindings,
      outputs,
      `let o = i;
  let b = ${base};
  var acc: f32 = ${init};
  for (var r = 0u; r < ${n}u; r++) { acc = ${combine("acc", `x[b + ${inner}]`)}; }
  out[o] = ${fin};`,
    );
  }
  const chunks = spec.chunks ?? 1;
  const per = Math.ceil(n / chunks);
  const g = groupGrid(outputs * chunks);
  return kernel(
    chunks > 1 ? `reduce_${op}_chunks` : `reduce_${op}`,
    bindings,
    g.workgroups,
    `var<workgroup> part: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let item = ${g.index};
  if (item >= ${outputs * chunks}u) { return; }
  let o = item / ${chunks}u;
  let r0 = (item % ${chunks}u) * ${per}u;
  let r1 = min(r0 + ${per}u, ${n}u);
  let b = ${base};
  var acc: f32 = ${init};
  for (var r = r0 + lid; r < r1; r += 256u) { acc = ${combine("acc", `x[b + ${inner}]`)}; }
  part[lid] = acc;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s) { part[lid] = ${combine("part[lid]", "part[lid + s]")}; }
    workgroupBarrier();
  }
  if (lid == 0u) { let acc = part[0]; out[item] = ${chunks > 1 ? "acc" : fin}; }
}`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const reduceKernel = cached(reduceKernelGen);
