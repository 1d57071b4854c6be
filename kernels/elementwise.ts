// Elementwise kernels: an n-ary map with NumPy broadcasting, where the op is a WGSL expression
// over the loaded inputs (named a, b, c, d, ...). Shapes are baked in as constants.

import { cached, f, grid1d, type Kernel, prod, type StorageType, stridesOf } from "./common.ts";

export interface MapInput {
  shape: readonly number[];
  type?: StorageType;
  /** Name in the expression (default a, b, c, ... by position). Every input must be used. */
  name?: string;
}

export interface MapSpec {
  name: string;
  /** WGSL expression of the output value, in terms of a, b, c, ... (each already an f32 unless
   * its type says otherwise). */
  expr: string;
  inputs: MapInput[];
  outShape: readonly number[];
  outType?: StorageType;
}

const NAMES = "abcdefgh";

/** Broadcast shapes NumPy-style; throws naming both shapes when they do not broadcast. */
export function broadcastShapes(...shapes: (readonly number[])[]): number[] {
  const n = Math.max(...shapes.map((s) => s.length));
  const out = new Array(n).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const j = n - s.length + i;
      if (s[i] === out[j] || s[i] === 1) continue;
      if (out[j] === 1) out[j] = s[i];
      else {throw new Error(`shapes ${
          shapes.map((x) => `[${x.join(", ")}]`).join(" and ")
        } do not broadcast`);}
    }
  }
  return out;
}

/** WGSL expression of input's flat index given the output's flat index `i`. */
function indexExpr(inShape: readonly number[], outShape: readonly number[]): string {
  const inSize = prod(inShape);
  if (inSize === 1) return "0u";
  const padded = [...new Array(outShape.length - inShape.length).fill(1), ...inShape];
  if (padded.every((d, k) => d === outShape[k])) return "i";
  const outStrides = stridesOf(outShape);
  const inStrides = stridesOf(padded);
  const terms: string[] = [];
  for (let k = 0; k < outShape.length; k++) {
    if (padded[k] === 1 || outShape[k] === 1) continue;
    const coord = k === 0
      ? `(i / ${outStrides[k]}u)`
      : `((i / ${outStrides[k]}u) % ${outShape[k]}u)`;
    terms.push(inStrides[k] === 1 ? coord : `${coord} * ${inStrides[k]}u`);
  }
  return terms.length ? terms.join(" + ") : "0u";
}

/** Four elements per thread, loaded and stored as vec4: every input is f32 and either the
 * output's shape or a single value, and the element count is a multiple of 4. The expression
 * stays scalar, evaluated once per component. */
function mapVec4(spec: MapSpec, n: number): boolean {
  return n % 4 === 0 && (spec.outType ?? "f32") === "f32" &&
    spec.inputs.every((inp) =>
      (inp.type ?? "f32") === "f32" &&
      (prod(inp.shape) === 1 || indexExpr(inp.shape, spec.outShape) === "i")
    );
}

function mapVec4KernelGen(spec: MapSpec, n: number): Kernel {
  const g = grid1d(n / 4);
  const names = spec.inputs.map((inp, k) => inp.name ?? NAMES[k]);
  const full = spec.inputs.map((inp) => prod(inp.shape) !== 1);
  const decls = spec.inputs.map((_, k) =>
    `@group(0) @binding(${k}) var<storage, read> in_${names[k]}: array<${
      full[k] ? "vec4<f32>" : "f32"
    }>;`
  );
  const loads = spec.inputs.map((_, k) =>
    `  let v_${names[k]} = in_${names[k]}[${full[k] ? "i" : "0u"}];`
  );
  const lanes = [0, 1, 2, 3].map((c) =>
    `  {
${
      spec.inputs.map((_, k) => `    let ${names[k]} = v_${names[k]}${full[k] ? `[${c}]` : ""};`)
        .join("\n")
    }
    r[${c}] = ${spec.expr};
  }`
  );
  const code = `${decls.join("\n")}
@group(0) @binding(${spec.inputs.length}) var<storage, read_write> out: array<vec4<f32>>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = ${g.index};
  if (i >= ${n / 4}u) { return; }
${loads.join("\n")}
  var r: vec4<f32>;
${lanes.join("\n")}
  out[i] = r;
}`;
  return { name: spec.name, code, workgroups: g.workgroups };
}

function mapKernelGen(spec: MapSpec): Kernel {
  const n = prod(spec.outShape);
  if (mapVec4(spec, n)) return mapVec4KernelGen(spec, n);
  const g = grid1d(n);
  const outType = spec.outType ?? "f32";
  const names = spec.inputs.map((inp, k) => inp.name ?? NAMES[k]);
  const decls = spec.inputs.map((inp, k) =>
    `@group(0) @binding(${k}) var<storage, read> in_${names[k]}: array<${inp.type ?? "f32"}>;`
  );
  const loads = spec.inputs.map((inp, k) =>
    `  let ${names[k]} = in_${names[k]}[${indexExpr(inp.shape, spec.outShape)}];`
  );
  const code = `${decls.join("\n")}
@group(0) @binding(${spec.inputs.length}) var<storage, read_write> out: array<${outType}>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = ${g.index};
  if (i >= ${n}u) { return; }
${loads.join("\n")}
  out[i] = ${spec.expr};
}`;
  return { name: spec.name, code, workgroups: g.workgroups };
}

/** out[i] = value, for n elements. */
function fillKernelGen(n: number, value: number, type: StorageType = "f32"): Kernel {
  const g = grid1d(n);
  const lit = type === "f32" ? f(value) : `${Math.trunc(value)}${type === "u32" ? "u" : "i"}`;
  return {
    name: "fill",
    code: `@group(0) @binding(0) var<storage, read_write> out: array<${type}>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = ${g.index};
  if (i >= ${n}u) { return; }
  out[i] = ${lit};
}`,
    workgroups: g.workgroups,
  };
}

/** dst[i] += src[i] (gradient accumulation). */
function accumulateKernelGen(n: number): Kernel {
  const g = grid1d(n);
  return {
    name: "accumulate",
    code: `@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = ${g.index};
  if (i >= ${n}u) { return; }
  dst[i] = dst[i] + src[i];
}`,
    workgroups: g.workgroups,
  };
}

// Generated once per distinct spec (see cached in common.ts).
export const mapKernel = cached(mapKernelGen);
export const fillKernel = cached(fillKernelGen);
export const accumulateKernel = cached(accumulateKernelGen);
