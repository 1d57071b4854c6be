// safetensors files and tensors: upload a file's entries into existing tensors (strict by
// default, naming every bad key), read tensors back in one batch and save them. The format itself
// (parse, encode, atomic file write) is safetensors_format.ts, re-exported here.

import { device, mapRead } from "./device.ts";
import { flush } from "./recorder.ts";
import {
  entriesOf,
  readSafetensors,
  type SafeDType,
  type SafeEntry,
  sourceName,
  type WritableDType,
  type WriteEntry,
  writeSafetensors,
} from "./safetensors_format.ts";
import { bytesOf, type DType, type Tensor, write } from "./tensor.ts";

export * from "./safetensors_format.ts";

/** Which file dtypes may be uploaded into a tensor of each engine dtype. */
const ACCEPTS: Record<DType, SafeDType[]> = {
  f32: ["F32", "F16", "BF16", "F64"],
  i32: ["I32", "I64", "I16", "I8"],
  u32: ["U32", "U64", "U16"],
  u8: ["U8", "BOOL"],
  f16: ["F16"],
};

/** f16 tensors are kernels' internal storage (engine/precision.ts), never saved. */
const WRITES: Partial<Record<DType, WritableDType>> = {
  f32: "F32",
  i32: "I32",
  u32: "U32",
  u8: "U8",
};

const RANGE: Partial<Record<DType, [number, number]>> = {
  i32: [-(2 ** 31), 2 ** 31 - 1],
  u32: [0, 2 ** 32 - 1],
};

export interface LoadResult {
  loaded: string[];
  /** Tensors the file lacks (an error in strict mode). */
  missing: string[];
  /** File entries no tensor takes (an error in strict mode). */
  unexpected: string[];
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, k) => d === b[k]);
}

/** Why `entry` cannot go into `t`, or null when it can. */
function mismatch(key: string, t: Tensor, entry: SafeEntry): string | null {
  if (t.disposed) return `"${key}": the tensor is disposed`;
  if (!sameShape(t.shape, entry.shape)) {
    return `"${key}": file has shape [${entry.shape.join(", ")}], tensor has [${
      t.shape.join(", ")
    }]`;
  }
  if (!ACCEPTS[t.dtype].includes(entry.dtype)) {
    return `"${key}": file has dtype ${entry.dtype}, tensor is ${t.dtype}`;
  }
  const range = RANGE[t.dtype];
  if (range && (entry.dtype === "I64" || entry.dtype === "U64")) {
    for (const v of entry.data) {
      if (v < range[0] || v > range[1]) return `"${key}": value ${v} does not fit ${t.dtype}`;
    }
  }
  return null;
}

/**
 * Upload a file's tensors into existing tensors of the same names (parameters keep their GPU
 * buffers, so optimisers and arenas stay valid). Shape or dtype mismatches always throw, naming
 * the key; in strict mode (the default) one error also lists every missing and unexpected key.
 * Keys in `optional` may be missing even then (state newer than some files: the tensor keeps
 * what it holds).
 */
export function loadInto(
  tensors: Map<string, Tensor> | Record<string, Tensor>,
  file: string | Uint8Array | Map<string, SafeEntry>,
  opts: { strict?: boolean; name?: string; optional?: readonly string[] } = {},
): LoadResult {
  const { strict = true, optional = [] } = opts;
  const fileName = file instanceof Map ? (opts.name ?? "<entries>") : sourceName(file, opts.name);
  const entries = file instanceof Map ? file : readSafetensors(file, opts.name);
  const targets = new Map(entriesOf(tensors));
  const missing = [...targets.keys()].filter((k) => !entries.has(k));
  const required = missing.filter((k) => !optional.includes(k));
  const unexpected = [...entries.keys()].filter((k) => !targets.has(k));
  const bad: string[] = [];
  for (const [key, t] of targets) {
    const e = entries.get(key);
    const why = e ? mismatch(key, t, e) : null;
    if (why) bad.push(why);
  }
  if (bad.length || (strict && (required.length || unexpected.length))) {
    const parts: string[] = [];
    if (bad.length) parts.push(`mismatched: ${bad.join("; ")}`);
    if (strict && required.length) parts.push(`missing from the file: ${required.join(", ")}`);
    if (strict && unexpected.length) parts.push(`unexpected in the file: ${unexpected.join(", ")}`);
    throw new Error(`${fileName}: cannot load:\n  ${parts.join("\n  ")}`);
  }
  const loaded: string[] = [];
  for (const [key, t] of targets) {
    const e = entries.get(key);
    if (!e) continue;
    write(t, e.data);
    loaded.push(key);
  }
  return { loaded, missing, unexpected };
}

/** Largest staging buffer used by one batched readback. */
const STAGING_CHUNK = 64 * 1024 * 1024;

/** Read many tensors back with one map per chunk instead of one per tensor (each map waits for
 * the GPU, which costs milliseconds in Deno). */
export async function readAll(tensors: Tensor[]): Promise<ArrayBuffer[]> {
  const out: ArrayBuffer[] = new Array(tensors.length);
  flush();
  let k = 0;
  while (k < tensors.length) {
    const batch: { t: Tensor; i: number; at: number; bytes: number }[] = [];
    let size = 0;
    for (; k < tensors.length; k++) {
      const bytes = bytesOf(tensors[k].size, tensors[k].dtype);
      if (batch.length && size + bytes > STAGING_CHUNK) break;
      batch.push({ t: tensors[k], i: k, at: size, bytes });
      size += bytes;
    }
    const staging = device().createBuffer({
      size: Math.max(4, size),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: "readback",
    });
    const enc = device().createCommandEncoder();
    for (const b of batch) {
      const src = b.t.binding;
      enc.copyBufferToBuffer(src.buffer, src.offset, staging, b.at, b.bytes);
    }
    device().queue.submit([enc.finish()]);
    await mapRead(staging);
    const all = staging.getMappedRange();
    for (const b of batch) out[b.i] = all.slice(b.at, b.at + b.bytes);
    staging.unmap();
    staging.destroy();
  }
  return out;
}

function typedOf(dtype: DType, buf: ArrayBuffer, n: number): ArrayLike<number> {
  switch (dtype) {
    case "f32":
      return new Float32Array(buf, 0, n);
    case "i32":
      return new Int32Array(buf, 0, n);
    case "u32":
      return new Uint32Array(buf, 0, n);
    case "u8":
      return new Uint8Array(buf, 0, n);
    case "f16":
      return new Float16Array(buf, 0, n);
  }
}

/** Read tensors back from the GPU (one batched readback) and write them as a safetensors file,
 * atomically. */
export async function saveTensors(
  path: string,
  tensors: Map<string, Tensor> | Record<string, Tensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  const list = entriesOf(tensors);
  for (const [key, t] of list) {
    if (!WRITES[t.dtype]) throw new Error(`saveTensors: ${key} is ${t.dtype}, which is not saved`);
  }
  const bufs = await readAll(list.map(([, t]) => t));
  const entries = new Map<string, WriteEntry>();
  list.forEach(([key, t], i) => {
    entries.set(key, {
      dtype: WRITES[t.dtype]!,
      shape: t.shape,
      data: typedOf(t.dtype, bufs[i], t.size),
    });
  });
  writeSafetensors(path, entries, metadata);
}
