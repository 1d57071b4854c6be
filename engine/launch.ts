// The bridge from kernel specs to recorded dispatches: inputs bind first, outputs after. A kernel
// that declares its bindings has each launch checked against them (count, dtype, access, size),
// so a mismatch names the kernel and the binding instead of surfacing as a WebGPU validation
// error. The check is O(bindings) on precomputed masks: a training step records ~2,500 launches.

import type { Binding, DType, Kernel } from "../kernels/common.ts";
import { dispatch } from "./recorder.ts";
import type { Tensor } from "./tensor.ts";

const DTYPE_BIT: Record<DType, number> = { f32: 1, u32: 2, i32: 4, u8: 8 };

/** A binding's accepted dtypes (bit mask, 0 = any) and the bytes a bound tensor must hold. */
interface Contract {
  masks: Uint8Array;
  minBytes: Float64Array;
}

const contracts = new WeakMap<Kernel, Contract>();

function dtypeMask(b: Binding): number {
  if (b.dtype !== undefined) {
    const list = typeof b.dtype === "string" ? [b.dtype] : b.dtype;
    return list.reduce((m, d) => m | DTYPE_BIT[d], 0);
  }
  const scalar = /\b(f32|u32|i32)\b/.exec(b.type)?.[1];
  if (scalar === "f32") return DTYPE_BIT.f32;
  if (scalar === "u32") return DTYPE_BIT.u32 | DTYPE_BIT.u8;
  if (scalar === "i32") return DTYPE_BIT.i32;
  return 0;
}

/** Bytes of one element of a binding's WGSL type (scalars, vectors, atomics; 4 otherwise). */
function elementBytes(type: string): number {
  const vec = /^vec([234])</.exec(type.trim());
  return vec ? (vec[1] === "3" ? 16 : 4 * Number(vec[1])) : 4;
}

function contractOf(k: Kernel, bindings: readonly Binding[]): Contract {
  let c = contracts.get(k);
  if (!c) {
    c = {
      masks: Uint8Array.from(bindings, dtypeMask),
      minBytes: Float64Array.from(bindings, (b) => (b.count ?? 0) * elementBytes(b.type)),
    };
    contracts.set(k, c);
  }
  return c;
}

function describeBinding(b: Binding): string {
  return `${b.type} [${b.access}]${b.count ? ` of at least ${b.count}` : ""}`;
}

function refuse(k: Kernel, i: number, why: string): never {
  const b = k.bindings![i];
  throw new Error(
    `kernel ${k.name}: binding ${i} '${b.name}' expects ${describeBinding(b)}, ${why}`,
  );
}

/** Throws, naming the kernel and the binding, where the tensors do not fit its declaration. */
function check(k: Kernel, bindings: readonly Binding[], inputs: Tensor[], outputs: Tensor[]) {
  const n = inputs.length + outputs.length;
  if (n !== bindings.length) {
    throw new Error(
      `kernel ${k.name}: expects ${bindings.length} bindings (${
        bindings.map((b) => b.name).join(", ")
      }), got ${n} tensors (${inputs.length} inputs, ${outputs.length} outputs)`,
    );
  }
  const c = contractOf(k, bindings);
  for (let i = 0; i < n; i++) {
    const out = i >= inputs.length;
    const t = out ? outputs[i - inputs.length] : inputs[i];
    const mask = c.masks[i];
    if (mask !== 0 && (mask & DTYPE_BIT[t.dtype]) === 0) {
      refuse(k, i, `got ${t.dtype} tensor ${t.describe()}`);
    }
    if (out && bindings[i].access !== "read_write") {
      refuse(k, i, `got output tensor ${t.describe()} (outputs bind read_write)`);
    }
    const bytes = t.dtype === "u8" ? t.size : t.size * 4;
    if (bytes < c.minBytes[i]) refuse(k, i, `got ${bytes} bytes in tensor ${t.describe()}`);
  }
}

export function run(k: Kernel, inputs: Tensor[], outputs: Tensor[]): void {
  if (k.bindings) check(k, k.bindings, inputs, outputs);
  dispatch(k.name, k.code, [...inputs, ...outputs].map((t) => t.binding), k.workgroups);
}
