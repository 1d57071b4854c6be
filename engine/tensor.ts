// Tensor: a shape, a dtype and a view of GPU memory. Contiguous row-major; views (reshape,
// parameter arenas) share storage with a reference count. An op output that its op can write
// again from tensors kept anyway (a BatchNorm's output from the conv output its backward keeps)
// carries that recipe, and may give its memory back between the forward and the backward
// (evict); its next use writes it again, as PyTorch's min-cut recomputation does.

import { device, mapRead } from "./device.ts";
import { pool } from "./pool.ts";
import { type Binding, flush, pending } from "./recorder.ts";
import { track } from "./scope.ts";
import { type DType, prod } from "../kernels/common.ts";

/** Element types: one list for tensors and kernel bindings (kernels/common.ts). */
export type { DType };
export type Shape = readonly number[];
type TypedArray = Float32Array | Uint32Array | Int32Array | Uint8Array | Float16Array;

/** What autograd records for a tensor made by a differentiable op. */
export interface Node {
  name: string;
  inputs: Tensor[];
  /** Given the gradient of the output, the gradient of each input (null: none). `into[j]`, where
   * given, is input j's gradient so far, held by nothing else: a rule that can add its result
   * into it in its own write-out may do so and return that very tensor (no separate sum pass);
   * any other rule ignores it. */
  backward: (grad: Tensor, into?: (Tensor | undefined)[]) => (Tensor | null)[];
  /** False when `backward` never reads the output (a conv without an activation, whose rule
   * needs its input and weight): backward's freeActivations then lets the output go once the
   * rules of the ops it fed have run, before its own (autograd.ts's ruleIgnoresOutput sets
   * it). Default true. */
  readsOutput?: boolean;
}

/** Writes a storage's contents again into `out` (the op that made them, run again on inputs
 * that outlive the storage's use). */
export type Recompute = (out: Binding) => void;

/** Evictions and the recomputes they cost (tests, benchmarks: the extra passes of a step). */
export const recomputeStats = { evictions: 0, recomputes: 0, recomputedBytes: 0 };

let evictionOn = true;

/** Turn eviction off (every Tensor.evict keeps the memory) or back on: tests and benchmarks
 * compare the recompute path with the keep path. */
export function setEviction(on: boolean): void {
  evictionOn = on;
}

/** GPU memory behind one or more tensors. */
export class Storage {
  refs = 1;
  #buffer: GPUBuffer | null;
  /** How to write this memory again, set by the op that wrote it (autograd's `record`); an
   * in-place write drops it (launch.ts, write()). */
  recompute: Recompute | null = null;
  constructor(
    buffer: GPUBuffer,
    readonly offset: number,
    readonly bytes: number,
    readonly pooled: boolean,
    /** The storage this one is a part of (an alias: `rowsOf`), kept alive until it goes. */
    readonly parent: Storage | null = null,
  ) {
    this.#buffer = buffer;
  }

  /** The buffer; an evicted storage gets a pooled one and is written again first (recorded
   * before the dispatch that asked, so queue order keeps it right). */
  get buffer(): GPUBuffer {
    if (!this.#buffer) {
      const buf = pool.acquire(this.bytes, "recomputed");
      this.#buffer = buf;
      recomputeStats.recomputes++;
      recomputeStats.recomputedBytes += this.bytes;
      this.recompute!({ buffer: buf, offset: 0, size: this.bytes });
    }
    return this.#buffer;
  }

  get evicted(): boolean {
    return this.#buffer === null;
  }

  /** The buffer for new contents written in place: no longer what the recipe would write, so
   * it goes (an evicted storage gets memory back without being recomputed). */
  overwrite(): GPUBuffer {
    this.recompute = null;
    this.#buffer ??= pool.acquire(this.bytes, "rewritten");
    return this.#buffer;
  }

  /** Give the memory back to the pool if it can be written again; whether it was. */
  evict(): boolean {
    if (!evictionOn || !this.#buffer || !this.recompute || !this.pooled || this.refs <= 0) {
      return false;
    }
    pool.release(this.#buffer);
    this.#buffer = null;
    recomputeStats.evictions++;
    return true;
  }

  release(): void {
    if (--this.refs > 0) return;
    this.parent?.release();
    if (this.pooled && this.#buffer) pool.release(this.#buffer);
    this.recompute = null;
  }
}

/** Bytes of one element: half precision (kernels' storage of transformed operands, never a
 * parameter or a gradient) 2, bytes 1, the rest 4. */
export function elementBytes(dtype: DType): number {
  return dtype === "u8" ? 1 : dtype === "f16" ? 2 : 4;
}

export function bytesOf(n: number, dtype: DType): number {
  const b = n * elementBytes(dtype);
  return Math.max(4, Math.ceil(b / 4) * 4);
}

let created = 0;

/** The serial number the next tensor will get (tensors are numbered in creation order). */
export function nextSerial(): number {
  return created;
}

export class Tensor {
  readonly size: number;
  readonly serial = created++;
  requiresGrad = false;
  grad: Tensor | null = null;
  /** Whether `.grad` counts as given, PyTorch's `grad is not None`: backward sets it on every
   * leaf it accumulates into. A parameter arena's `.grad` always holds memory (the arena's view),
   * so this is what tells AdamW which parameters the last backward reached; the arena's
   * zeroGrads clears it (torch's zero_grad(set_to_none=True)). */
  hasGrad = false;
  node: Node | null = null;
  kept = false;
  disposed = false;
  name = "";

  // `storage` is reassignable so a parameter arena can move a tensor into its shared buffer.
  constructor(readonly shape: Shape, readonly dtype: DType, public storage: Storage) {
    this.size = prod(shape);
    track(this);
  }

  get ndim(): number {
    return this.shape.length;
  }

  get binding(): Binding {
    if (this.disposed) throw new Error(`tensor ${this.describe()} used after dispose`);
    return {
      buffer: this.storage.buffer,
      offset: this.storage.offset,
      size: bytesOf(this.size, this.dtype),
    };
  }

  describe(): string {
    return `${this.name ? this.name + " " : ""}[${this.shape.join(", ")}] ${this.dtype}`;
  }

  /** Survive scopes (parameters, optimiser state, cached constants). */
  keep(): this {
    this.kept = true;
    return this;
  }

  /** Let this tensor's memory (shared with its views) go until its next use, if the op that
   * made it can write it again (see Storage.recompute); whether it did. For an activation
   * whose forward uses are over (the model knows when): a backward rule that reads it gets it
   * written again, one elementwise pass, and one that never does costs nothing. Without a
   * tape nothing has a recipe, and this keeps the memory. */
  evict(): boolean {
    return !this.disposed && this.storage.evict();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.storage.release();
    if (this.grad && !this.grad.disposed) this.grad.dispose();
  }

  /** Copy to the CPU. Submits pending work and waits for it. */
  async read(): Promise<TypedArray> {
    const bytes = bytesOf(this.size, this.dtype);
    const staging = device().createBuffer({
      size: bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: "readback",
    });
    // An evicted tensor is written again first, by a recorded dispatch the flush submits.
    const buffer = this.storage.buffer;
    flush();
    const enc = device().createCommandEncoder();
    enc.copyBufferToBuffer(buffer, this.storage.offset, staging, 0, bytes);
    device().queue.submit([enc.finish()]);
    await mapRead(staging);
    const copyOut = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    switch (this.dtype) {
      case "f32":
        return new Float32Array(copyOut, 0, this.size);
      case "u32":
        return new Uint32Array(copyOut, 0, this.size);
      case "i32":
        return new Int32Array(copyOut, 0, this.size);
      case "u8":
        return new Uint8Array(copyOut, 0, this.size);
      case "f16":
        return new Float16Array(copyOut, 0, this.size);
    }
  }

  async toArray(): Promise<number[]> {
    return Array.from(await this.read());
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item() of ${this.describe()}: needs one element`);
    return (await this.read())[0];
  }
}

/** A new tensor with uninitialised pooled memory. */
export function empty(shape: Shape, dtype: DType = "f32"): Tensor {
  checkShape(shape);
  const bytes = bytesOf(prod(shape), dtype);
  return new Tensor(shape, dtype, new Storage(pool.acquire(bytes), 0, bytes, true));
}

/** A tensor sharing `t`'s memory with another shape of the same size (no autograd: see
 * ops/shape.ts reshape for the differentiable form). */
export function view(t: Tensor, shape: Shape): Tensor {
  if (prod(shape) !== t.size) {
    throw new Error(`cannot view ${t.describe()} as [${shape.join(", ")}]`);
  }
  t.storage.refs++;
  return new Tensor(shape, t.dtype, t.storage);
}

/** A tensor of `shape` over elements [start, start + its size) of `t`'s memory: a part of a
 * batch that a launch binds at a byte offset (chunked ops). The offset must be a multiple of
 * the device's minStorageBufferOffsetAlignment (`aliasAlignment`). No autograd, like `view`. */
export function rowsOf(t: Tensor, start: number, shape: Shape): Tensor {
  checkShape(shape);
  const n = prod(shape);
  if (!Number.isInteger(start) || start < 0 || start + n > t.size) {
    throw new Error(`rowsOf: elements [${start}, ${start + n}) are outside ${t.describe()}`);
  }
  const offset = t.storage.offset + start * elementBytes(t.dtype);
  if (offset % aliasAlignment() !== 0) {
    throw new Error(
      `rowsOf: byte offset ${offset} into ${t.describe()} is not a multiple of ${aliasAlignment()}`,
    );
  }
  t.storage.refs++;
  const storage = new Storage(t.storage.buffer, offset, bytesOf(n, t.dtype), false, t.storage);
  return new Tensor(shape, t.dtype, storage);
}

/** Byte alignment of a binding's offset on this device (rowsOf). */
export function aliasAlignment(): number {
  return device().limits.minStorageBufferOffsetAlignment;
}

function checkShape(shape: Shape): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`bad shape [${shape.join(", ")}]`);
  }
}

function arrayFor(dtype: DType, data: ArrayLike<number>): TypedArray {
  switch (dtype) {
    case "f32":
      return data instanceof Float32Array ? data : Float32Array.from(data);
    case "u32":
      return data instanceof Uint32Array ? data : Uint32Array.from(data);
    case "i32":
      return data instanceof Int32Array ? data : Int32Array.from(data);
    case "u8":
      return data instanceof Uint8Array ? data : Uint8Array.from(data);
    case "f16":
      return data instanceof Float16Array ? data : Float16Array.from(data);
  }
}

/** Upload CPU data into `t` (flushes recorded work first: the buffer may be a reused one that
 * recorded dispatches still read). */
export function write(t: Tensor, data: ArrayLike<number>): void {
  if (data.length !== t.size) {
    throw new Error(`write: ${data.length} values for ${t.describe()}`);
  }
  const arr = arrayFor(t.dtype, data);
  if (arr.byteLength === 0) return; // Deno's writeBuffer panics on empty data
  if (pending() > 0) flush();
  const buffer = t.storage.overwrite();
  const bytes = arr.byteLength;
  if (bytes % 4 === 0) {
    device().queue.writeBuffer(
      buffer,
      t.storage.offset,
      arr.buffer as ArrayBuffer,
      arr.byteOffset,
      bytes,
    );
  } else {
    const padded = new Uint8Array(Math.ceil(bytes / 4) * 4);
    padded.set(new Uint8Array(arr.buffer, arr.byteOffset, bytes));
    device().queue.writeBuffer(buffer, t.storage.offset, padded);
  }
}

/** A tensor holding `data` (row-major), `f32` unless said otherwise. */
export function tensor(data: ArrayLike<number>, shape?: Shape, dtype: DType = "f32"): Tensor {
  const s = shape ?? [data.length];
  if (prod(s) !== data.length) {
    throw new Error(`tensor: ${data.length} values do not fill shape [${s.join(", ")}]`);
  }
  const t = empty(s, dtype);
  write(t, data);
  return t;
}

export function full(shape: Shape, value: number, dtype: DType = "f32"): Tensor {
  const n = prod(shape);
  const arr = dtype === "f32"
    ? new Float32Array(n)
    : dtype === "u8"
    ? new Uint8Array(n)
    : dtype === "f16"
    ? new Float16Array(n)
    : new Uint32Array(n);
  arr.fill(value);
  return tensor(arr, shape, dtype);
}

export function zeros(shape: Shape, dtype: DType = "f32"): Tensor {
  return full(shape, 0, dtype);
}

export function ones(shape: Shape): Tensor {
  return full(shape, 1);
}

/** A trainable leaf: kept across scopes, gradients accumulate into `.grad`. */
export function parameter(data: ArrayLike<number>, shape: Shape, name = ""): Tensor {
  const t = tensor(data, shape).keep();
  t.requiresGrad = true;
  t.name = name;
  return t;
}
