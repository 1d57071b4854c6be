// Shared pieces of the WGSL generators. Kernels are pure: spec in, WGSL text and launch grid out.

export interface Kernel {
  /** Op name: used as the pipeline label, so GPU errors name it. */
  name: string;
  code: string;
  workgroups: [number, number, number];
  /** The storage bindings in order (inputs, then outputs), as `header` wrote them: `run` refuses
   * a launch whose operands do not match them. */
  bindings: readonly Binding[];
  /** The launch's shape in words (e.g. a matmul's M×N×K), appended to its label in kernel
   * profiles (bench/gpu_train_step.ts --profile) so that time can be told apart by shape. */
  detail?: string;
  /** Bytes a launch reads or writes of each binding where that is less than the range bound (a
   * channel slab of a larger buffer; null: all of it). Traffic counts only
   * (bench/step_traffic.ts). */
  touched?: readonly (number | null)[];
}

/** One `@group(0)` storage binding: a runtime-sized array of `type` (a WGSL type such as f32,
 * vec4<f32>, atomic<u32>, or an alias the module declares). */
export interface Binding {
  name: string;
  type: string;
  access: "read" | "read_write";
  /** Tensor dtype(s) accepted; by default the scalar inside `type` (f32, u32 — which also takes
   * packed u8 —, i32 or f16), none for an alias. */
  dtype?: DType | readonly DType[];
  /** Elements of `type` the kernel reads or writes at the most: a bound tensor must hold them. */
  count?: number;
  /** `type` is the variable's whole type (a struct, a vector or a fixed-size array), not the
   * element of a runtime-sized array. */
  bare?: boolean;
}

/** Tensor element types (engine/tensor.ts's DType). */
export type DType = "f32" | "u32" | "i32" | "u8" | "f16";

/** A read-only binding of `type` (f32 by default). */
export function ro(name: string, type = "f32", extra?: Partial<Binding>): Binding {
  return { name, type, access: "read", ...extra };
}

/** A read-write binding of `type` (f32 by default). */
export function rw(name: string, type = "f32", extra?: Partial<Binding>): Binding {
  return { name, type, access: "read_write", ...extra };
}

/** The WGSL declarations of `bindings`, numbered in order; `enable f16;` first where one holds
 * half-precision values (the device's shader-f16 feature: engine/precision.ts `halfAvailable`). */
export function header(bindings: readonly Binding[]): string {
  const f16 = bindings.some((b) => /\bf16\b/.test(b.type)) ? "enable f16;\n" : "";
  return f16 +
    bindings.map((b, k) =>
      `@group(0) @binding(${k}) var<storage, ${b.access}> ${b.name}: ${
        b.bare ? b.type : `array<${b.type}>`
      };`
    ).join("\n");
}

/** The common 1-D entry point: `main` over a `grid1d` launch, with `v` (`i` by default) the
 * thread's flat index and threads past `n` (a count, or a WGSL u32 expression) returned. The
 * caller closes the function body. */
export function main1d(index: string, n: number | string, wg = 256, v = "i"): string {
  return `@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let ${v} = ${index};
  if (${v} >= ${typeof n === "number" ? `${n}u` : n}) { return; }`;
}

/** A kernel whose code is the header of `bindings` followed by `body`. */
export function kernel(
  name: string,
  bindings: readonly Binding[],
  workgroups: [number, number, number],
  body: string,
): Kernel {
  return { name, bindings, workgroups, code: `${header(bindings)}\n${body}` };
}

/** A one-thread-per-element kernel over `n` items: header, the 1-D prologue, then `body` (which
 * uses `i`) and the closing brace; `decls` go between the header and the entry point. */
export function kernel1d(
  name: string,
  bindings: readonly Binding[],
  n: number,
  body: string,
  decls = "",
  wg = 256,
): Kernel {
  const g = grid1d(n, wg);
  const pre = decls ? `${decls}\n` : "";
  return kernel(name, bindings, g.workgroups, `${pre}${main1d(g.index, n, wg)}\n  ${body}\n}`);
}

export const MAX_GROUPS = 65535;

/** A 1-D launch of `n` threads in workgroups of `wg`, folded into 2-D when it exceeds the
 * per-dimension limit. `index` is the WGSL expression of the flat thread index (needs `gid`). */
export function grid1d(
  n: number,
  wg = 256,
): { workgroups: [number, number, number]; index: string } {
  const groups = Math.max(1, Math.ceil(n / wg));
  if (groups <= MAX_GROUPS) return { workgroups: [groups, 1, 1], index: "gid.x" };
  const x = MAX_GROUPS;
  const y = Math.ceil(groups / x);
  return { workgroups: [x, y, 1], index: `(gid.x + gid.y * ${x * wg}u)` };
}

/** Workgroup index folded the same way, for one-workgroup-per-item launches. */
export function groupGrid(n: number): { workgroups: [number, number, number]; index: string } {
  if (n <= MAX_GROUPS) return { workgroups: [n, 1, 1], index: "wid.x" };
  const y = Math.ceil(n / MAX_GROUPS);
  return { workgroups: [MAX_GROUPS, y, 1], index: `(wid.x + wid.y * ${MAX_GROUPS}u)` };
}

export function prod(shape: readonly number[]): number {
  let p = 1;
  for (const d of shape) p *= d;
  return p;
}

export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1];
  return s;
}

/** WGSL float literal. */
export function f(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`non-finite constant ${x} in a kernel`);
  const s = x.toString();
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

export type StorageType = "f32" | "u32" | "i32";

/**
 * Memoise a kernel generator on its (plain-data) arguments. A training step asks for the same
 * kernels every step; regenerating the WGSL and hashing it again for the pipeline cache cost
 * more CPU than recording the dispatch. Returned kernels are shared: never mutate them.
 */
export function cached<A extends unknown[]>(gen: (...args: A) => Kernel): (...args: A) => Kernel {
  const memo = new Map<string, Kernel>();
  return (...args: A): Kernel => {
    let key = JSON.stringify(args);
    // JSON writes NaN, ±Infinity and null alike: spell them out where any appears.
    if (key.includes("null")) key = JSON.stringify(args, nonFinite);
    let k = memo.get(key);
    if (!k) {
      k = gen(...args);
      memo.set(key, k);
    }
    return k;
  };
}

const nonFinite = (_k: string, v: unknown) =>
  typeof v === "number" && !Number.isFinite(v) ? String(v) : v;

/** Bytes a WGSL type occupies as an array element (its size rounded up to its alignment). */
function wgslStride(t: string): number {
  t = t.trim();
  if (/^(f32|u32|i32|atomic<(u32|i32)>)$/.test(t)) return 4;
  if (t === "f16") return 2;
  const vec = /^vec([234])<(f32|u32|i32|f16)>$/.exec(t);
  if (vec) {
    const n = Number(vec[1]), w = vec[2] === "f16" ? 2 : 4;
    return (n === 3 ? 4 : n) * w;
  }
  const arr = /^array<(.*),\s*(\d+)u?\s*>$/.exec(t);
  if (arr) return Number(arr[2]) * wgslStride(arr[1]);
  throw new Error(`workgroupBytes: no size for WGSL type ${t}`);
}

/** Workgroup memory a WGSL module declares (var<workgroup> of scalars, vectors and fixed-size
 * arrays of them), each variable rounded up to 16 bytes. */
export function workgroupBytes(code: string): number {
  let total = 0;
  for (const m of code.matchAll(/var<workgroup>\s+\w+\s*:\s*([^;]+);/g)) {
    total += Math.ceil(wgslStride(m[1]) / 16) * 16;
  }
  return total;
}
