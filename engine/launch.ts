// The bridge from kernel specs to recorded dispatches: inputs bind first, outputs after. A kernel
// that declares its bindings has each launch checked against them (count, dtype, access, size),
// so a mismatch names the kernel and the binding instead of surfacing as a WebGPU validation
// error. The check is O(bindings) on precomputed masks: a training step records ~2,500 launches.
// An operand may also be a raw buffer range (a per-step seed or hyper-parameter slot, a lookup
// table): it is checked for its place, access and size, the tensors beside it as always.

import type { Binding, DType, Kernel } from "../kernels/common.ts";
import { type Binding as BufferRange, dispatch } from "./recorder.ts";
import type { Tensor } from "./tensor.ts";

/** What a launch binds: a tensor, or a raw buffer range that is not one. */
export type Operand = Tensor | BufferRange;

function isTensor(o: Operand): o is Tensor {
  return (o as Tensor).dtype !== undefined;
}

const DTYPE_BIT: Record<DType, number> = { f32: 1, u32: 2, i32: 4, u8: 8, f16: 16 };

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
  const scalar = /\b(f32|u32|i32|f16)\b/.exec(b.type)?.[1];
  if (scalar === "f32") return DTYPE_BIT.f32;
  if (scalar === "f16") return DTYPE_BIT.f16;
  if (scalar === "u32") return DTYPE_BIT.u32 | DTYPE_BIT.u8;
  if (scalar === "i32") return DTYPE_BIT.i32;
  return 0;
}

/** Bytes of one element of a binding's WGSL type (scalars, vectors, atomics; 4 otherwise). */
function elementBytes(type: string): number {
  const t = type.trim();
  const w = /\bf16\b/.test(t) ? 2 : 4;
  const vec = /^vec([234])</.exec(t);
  return vec ? (vec[1] === "3" ? 4 : Number(vec[1])) * w : w;
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
  const b = k.bindings[i];
  throw new Error(
    `kernel ${k.name}: binding ${i} '${b.name}' expects ${describeBinding(b)}, ${why}`,
  );
}

/** Throws, naming the kernel and the binding, where the operands do not fit its declaration. */
function check(k: Kernel, bindings: readonly Binding[], inputs: Operand[], outputs: Operand[]) {
  const n = inputs.length + outputs.length;
  if (n !== bindings.length) {
    throw new Error(
      `kernel ${k.name}: expects ${bindings.length} bindings (${
        bindings.map((b) => b.name).join(", ")
      }), got ${n} operands (${inputs.length} inputs, ${outputs.length} outputs)`,
    );
  }
  const c = contractOf(k, bindings);
  for (let i = 0; i < n; i++) {
    const out = i >= inputs.length;
    const o = out ? outputs[i - inputs.length] : inputs[i];
    let bytes: number, what: string;
    if (isTensor(o)) {
      const mask = c.masks[i];
      if (mask !== 0 && (mask & DTYPE_BIT[o.dtype]) === 0) {
        refuse(k, i, `got ${o.dtype} tensor ${o.describe()}`);
      }
      bytes = o.dtype === "u8" ? o.size : o.size * 4;
      what = `tensor ${o.describe()}`;
    } else {
      bytes = o.size;
      what = `raw buffer range '${o.buffer.label}' at ${o.offset}`;
    }
    if (out && bindings[i].access !== "read_write") {
      refuse(k, i, `got output ${what} (outputs bind read_write)`);
    }
    if (bytes < c.minBytes[i]) refuse(k, i, `got ${bytes} bytes in ${what}`);
  }
}

const rangeOf = (o: Operand): BufferRange => (isTensor(o) ? o.binding : o);

/** Record one launch of `k`: inputs bind first, then outputs, each checked against the kernel's
 * declared bindings. An operand is a tensor or, where the kernel reads a buffer that is none (a
 * seed, a hyper-parameter slot), that buffer range. */
export function run(k: Kernel, inputs: Operand[], outputs: Operand[]): void {
  check(k, k.bindings, inputs, outputs);
  // Ranges first: an evicted operand is written again here, before this dispatch.
  const ranges = [...inputs, ...outputs].map(rangeOf);
  // An output tensor is written now, so its op's recipe (tensor.ts Storage.recompute) no
  // longer describes it: an op output written in place must not come back as it was.
  for (const o of outputs) if (isTensor(o)) o.storage.recompute = null;
  dispatch(k.name, k.code, ranges, k.workgroups, k.detail, k.touched);
}
