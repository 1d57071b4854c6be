// Elementwise kernels: an n-ary map with NumPy broadcasting, where the op is a WGSL expression
// over the loaded inputs (named a, b, c, d, ...). Shapes are baked in as constants.

import {
  cached,
  f,
  type Kernel,
  kernel1d,
  prod,
  ro,
  rw,
  type StorageType,
  stridesOf,
} from "./common.ts";

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
  /** Add the value into what `out` holds (f32; a gradient summed in the write-out). */
  accumulate?: boolean;
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
  const names = spec.inputs.map((inp, k) => inp.name ?? NAMES[k]);
  const full = spec.inputs.map((inp) => prod(inp.shape) !== 1);
  const bindings = [
    ...names.map((nm, k) => ro(`in_${nm}`, full[k] ? "vec4<f32>" : "f32")),
    rw("out", "vec4<f32>"),
  ];
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
  const body = `${loads.join("\n")}
  var r: vec4<f32>;
${lanes.join("\n")}
  out[i] = ${spec.accumulate ? "out[i] + r" : "r"};`;
  return withAccumulateTraffic(spec, n, kernel1d(spec.name, bindings, n / 4, body.trimStart()));
}

/** Adding into `out` reads it as well as writing it (traffic counts, bench/step_traffic.ts). */
function withAccumulateTraffic(spec: MapSpec, n: number, k: Kernel): Kernel {
  return spec.accumulate ? { ...k, touched: [...spec.inputs.map(() => null), 8 * n] } : k;
}

function mapKernelGen(spec: MapSpec): Kernel {
  const n = prod(spec.outShape);
  if (mapVec4(spec, n)) return mapVec4KernelGen(spec, n);
  const names = spec.inputs.map((inp, k) => inp.name ?? NAMES[k]);
  const bindings = [
    ...spec.inputs.map((inp, k) => ro(`in_${names[k]}`, inp.type ?? "f32")),
    rw("out", spec.outType ?? "f32"),
  ];
  const loads = spec.inputs.map((inp, k) =>
    `  let ${names[k]} = in_${names[k]}[${indexExpr(inp.shape, spec.outShape)}];`
  );
  const body = `${loads.join("\n")}
  out[i] = ${spec.accumulate ? `out[i] + (${spec.expr})` : spec.expr};`;
  if (spec.accumulate && (spec.outType ?? "f32") !== "f32") {
    throw new Error(`map ${spec.name}: accumulate needs an f32 output`);
  }
  return withAccumulateTraffic(spec, n, kernel1d(spec.name, bindings, n, body.trimStart()));
}

/** out[i] = value, for n elements. */
function fillKernelGen(n: number, value: number, type: StorageType = "f32"): Kernel {
  const lit = type === "f32" ? f(value) : `${Math.trunc(value)}${type === "u32" ? "u" : "i"}`;
  return kernel1d("fill", [rw("out", type)], n, `out[i] = ${lit};`);
}

/** dst[i] += src[i] (gradient accumulation). */
function accumulateKernelGen(n: number): Kernel {
  return kernel1d("accumulate", [ro("src"), rw("dst")], n, "dst[i] = dst[i] + src[i];");
}

// Generated once per distinct spec (see cached in common.ts).
export const mapKernel = cached(mapKernelGen);
export const fillKernel = cached(fillKernelGen);
export const accumulateKernel = cached(accumulateKernelGen);
