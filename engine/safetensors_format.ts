// safetensors files, the CPU side: an 8-byte little-endian header length, a JSON header
// ({name: {dtype, shape, data_offsets}, __metadata__?: {string: string}}), then the raw data,
// parsed and encoded without the GPU (safetensors.ts moves them in and out of tensors). Every
// error names the file (and the key when one is at fault).

import { prod } from "../kernels/common.ts";

export type SafeDType =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "U64"
  | "I32"
  | "U32"
  | "I16"
  | "U16"
  | "I8"
  | "U8"
  | "BOOL";

/** Dtypes this module can write. */
export type WritableDType = "F64" | "F32" | "I64" | "I32" | "U32" | "U8";

/** Values as read: F16/BF16 widen to Float32Array, I64/U64 become numbers (Float64Array, exact
 * below 2^53), BOOL is a Uint8Array of 0/1. */
export type SafeData =
  | Float64Array
  | Float32Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Uint16Array
  | Int8Array
  | Uint8Array;

export interface SafeEntry {
  dtype: SafeDType;
  shape: number[];
  data: SafeData;
}

export interface WriteEntry {
  dtype: WritableDType;
  shape: readonly number[];
  data: ArrayLike<number>;
}

/** The tensors of a file, with its `__metadata__` (empty when absent). */
export class SafetensorsMap extends Map<string, SafeEntry> {
  metadata: Record<string, string> = {};
}

const ITEM_BYTES: Record<SafeDType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  U64: 8,
  I32: 4,
  U32: 4,
  I16: 2,
  U16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** The header is capped like the reference implementation does, so garbage cannot make us
 * allocate gigabytes. */
const MAX_HEADER = 100_000_000;

class FormatError extends Error {}

// ---------------------------------------------------------------------------------------------
// Decoding

let f16Table: Float32Array | null = null;

/** All 65536 half-precision values, built once (faster than per-value bit twiddling). */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  f16Table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    f16Table[h] = e === 0
      ? sign * m * 2 ** -24
      : e === 31
      ? (m ? NaN : sign * Infinity)
      : sign * (1 + m / 1024) * 2 ** (e - 15);
  }
  return f16Table;
}

/** Decode `raw` (a fresh, aligned copy of one tensor's bytes). Assumes a little-endian host,
 * like every platform Deno runs on. */
function decode(dtype: SafeDType, raw: ArrayBuffer, key: string): SafeData {
  switch (dtype) {
    case "F64":
      return new Float64Array(raw);
    case "F32":
      return new Float32Array(raw);
    case "F16": {
      const h = new Uint16Array(raw);
      const t = halfTable();
      const out = new Float32Array(h.length);
      for (let i = 0; i < h.length; i++) out[i] = t[h[i]];
      return out;
    }
    case "BF16": {
      // bf16 is the top half of an f32: shifting the bits back up is exact.
      const h = new Uint16Array(raw);
      const bits = new Uint32Array(h.length);
      for (let i = 0; i < h.length; i++) bits[i] = h[i] << 16;
      return new Float32Array(bits.buffer);
    }
    case "I64":
    case "U64": {
      const big = dtype === "I64" ? new BigInt64Array(raw) : new BigUint64Array(raw);
      const out = new Float64Array(big.length);
      for (let i = 0; i < big.length; i++) {
        const v = Number(big[i]);
        if (!Number.isSafeInteger(v)) {
          throw new FormatError(`tensor "${key}": ${dtype} value ${big[i]} does not fit a number`);
        }
        out[i] = v;
      }
      return out;
    }
    case "I32":
      return new Int32Array(raw);
    case "U32":
      return new Uint32Array(raw);
    case "I16":
      return new Int16Array(raw);
    case "U16":
      return new Uint16Array(raw);
    case "I8":
      return new Int8Array(raw);
    case "U8":
      return new Uint8Array(raw);
    case "BOOL":
      return Uint8Array.from(new Uint8Array(raw), (b) => (b ? 1 : 0));
  }
}

function isShape(s: unknown): s is number[] {
  return Array.isArray(s) && s.every((d) => Number.isInteger(d) && d >= 0);
}

function parse(bytes: Uint8Array): SafetensorsMap {
  if (bytes.length < 8) {
    throw new FormatError(`only ${bytes.length} bytes: too short for a safetensors header`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(dv.getBigUint64(0, true));
  if (headerLen > bytes.length - 8 || headerLen > MAX_HEADER) {
    throw new FormatError(
      `not a safetensors file, or truncated: header length ${headerLen} but ${
        bytes.length - 8
      } bytes follow`,
    );
  }
  let header: unknown;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + headerLen));
    header = JSON.parse(text);
  } catch {
    throw new FormatError("not a safetensors file: the header is not valid UTF-8 JSON");
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw new FormatError("not a safetensors file: the header is not a JSON object");
  }
  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  const out = new SafetensorsMap();
  for (const [key, value] of Object.entries(header as Record<string, unknown>)) {
    if (key === "__metadata__") {
      const meta = value as Record<string, unknown>;
      if (meta === null || typeof meta !== "object") {
        throw new FormatError("__metadata__ is not an object");
      }
      for (const [k, v] of Object.entries(meta)) out.metadata[k] = String(v);
      continue;
    }
    const info = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = info?.dtype as SafeDType;
    if (typeof dtype !== "string" || !(dtype in ITEM_BYTES)) {
      throw new FormatError(`tensor "${key}": unsupported dtype ${JSON.stringify(info?.dtype)}`);
    }
    if (!isShape(info.shape)) {
      throw new FormatError(`tensor "${key}": bad shape ${JSON.stringify(info.shape)}`);
    }
    const offs = info.data_offsets;
    if (!isShape(offs) || offs.length !== 2 || offs[1] < offs[0]) {
      throw new FormatError(`tensor "${key}": bad data_offsets ${JSON.stringify(offs)}`);
    }
    const [begin, end] = offs;
    const expected = prod(info.shape) * ITEM_BYTES[dtype];
    if (end - begin !== expected) {
      throw new FormatError(
        `tensor "${key}": ${
          end - begin
        } bytes of data for ${dtype} [${info.shape}] (needs ${expected})`,
      );
    }
    if (end > dataLen) {
      throw new FormatError(
        `truncated: tensor "${key}" ends at data byte ${end} but only ${dataLen} bytes of data remain`,
      );
    }
    const raw = bytes.slice(dataStart + begin, dataStart + end).buffer;
    out.set(key, { dtype, shape: info.shape, data: decode(dtype, raw, key) });
  }
  return out;
}

export function sourceName(src: string | Uint8Array, name?: string): string {
  return name ?? (typeof src === "string" ? src : "<bytes>");
}

/** Parse a safetensors file (a path or its bytes). Errors name the file. */
export function readSafetensors(src: string | Uint8Array, name?: string): SafetensorsMap {
  const file = sourceName(src, name);
  let bytes: Uint8Array;
  try {
    bytes = typeof src === "string" ? Deno.readFileSync(src) : src;
  } catch (e) {
    throw new Error(`${file}: cannot read: ${(e as Error).message}`);
  }
  try {
    return parse(bytes);
  } catch (e) {
    if (e instanceof FormatError) throw new Error(`${file}: ${e.message}`);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding

function encodeData(key: string, e: WriteEntry): Uint8Array {
  const n = prod(e.shape);
  if (e.data.length !== n) {
    throw new Error(`tensor "${key}": ${e.data.length} values for shape [${e.shape}]`);
  }
  const ints = (lo: number, hi: number) => {
    for (let i = 0; i < n; i++) {
      const v = e.data[i];
      if (!Number.isInteger(v) || v < lo || v > hi) {
        throw new Error(`tensor "${key}": value ${v} at ${i} is not a valid ${e.dtype}`);
      }
    }
  };
  let arr: ArrayBufferView;
  switch (e.dtype) {
    case "F64":
      arr = Float64Array.from(e.data);
      break;
    case "F32":
      arr = Float32Array.from(e.data);
      break;
    case "I64": {
      ints(Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
      const big = new BigInt64Array(n);
      for (let i = 0; i < n; i++) big[i] = BigInt(e.data[i]);
      arr = big;
      break;
    }
    case "I32":
      ints(-(2 ** 31), 2 ** 31 - 1);
      arr = Int32Array.from(e.data);
      break;
    case "U32":
      ints(0, 2 ** 32 - 1);
      arr = Uint32Array.from(e.data);
      break;
    case "U8":
      ints(0, 255);
      arr = Uint8Array.from(e.data);
      break;
    default:
      throw new Error(`tensor "${key}": cannot write dtype ${e.dtype}`);
  }
  return new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
}

export function entriesOf<T>(m: Map<string, T> | Record<string, T>): [string, T][] {
  return m instanceof Map ? [...m.entries()] : Object.entries(m);
}

/** The bytes of a safetensors file. Tensors keep the given order; the header is padded with
 * spaces to a multiple of 8 bytes so the data starts aligned. */
export function encodeSafetensors(
  entries: Map<string, WriteEntry> | Record<string, WriteEntry>,
  metadata?: Record<string, string>,
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const [key, e] of entriesOf(entries)) {
    if (key === "__metadata__") throw new Error(`"__metadata__" cannot name a tensor`);
    const blob = encodeData(key, e);
    header[key] = {
      dtype: e.dtype,
      shape: [...e.shape],
      data_offsets: [offset, offset + blob.length],
    };
    blobs.push(blob);
    offset += blob.length;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const b of blobs) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

/** Write a safetensors file atomically: to a temporary file beside it, then rename, so a failed
 * write never leaves a partial file under `path`. */
export function writeSafetensors(
  path: string,
  entries: Map<string, WriteEntry> | Record<string, WriteEntry>,
  metadata?: Record<string, string>,
): void {
  const bytes = encodeSafetensors(entries, metadata);
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    Deno.writeFileSync(tmp, bytes);
    Deno.renameSync(tmp, path);
  } catch (e) {
    try {
      Deno.removeSync(tmp);
    } catch { /* never created */ }
    throw new Error(`${path}: cannot write: ${(e as Error).message}`);
  }
}
