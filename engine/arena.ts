// Parameter arena: every parameter lives in one GPU buffer (each at an aligned offset) and its
// gradient at the same offset of a second buffer, so an optimiser updates all parameters in one
// dispatch and zeroing every gradient is one dispatch. Parameters stay ordinary tensors: their
// Storage is moved into the arena, and `p.grad` is preset to the arena view so autograd's
// in-place accumulation lands there. Since that memory always exists, whether a parameter has a
// gradient in PyTorch's sense (`grad is not None`) is its `hasGrad` flag: set by backward for
// the leaves it reaches, cleared by zeroGrads, so that AdamW skips the others as torch does.
//
// One dispatch binds the whole arena only where it fits one storage binding
// (maxStorageBufferBindingSize: 128 MiB on Mesa's software driver, CGNet's arena is 135 MB).
// Otherwise the arena-wide kernels run once per chunk, each chunk bound at its offset of the same
// buffer (`chunks`); an elementwise kernel does not care where a parameter is cut.

import { fillKernel } from "../kernels/elementwise.ts";
import { device } from "./device.ts";
import { run } from "./launch.ts";
import { copy, flush } from "./recorder.ts";
import { Storage, Tensor } from "./tensor.ts";

/** Byte alignment of each parameter: WebGPU's minStorageBufferOffsetAlignment is at most 256, so
 * 256 is valid on every device and keeps every slot a whole number of vec4s. */
export const ARENA_ALIGN = 256;

/** Chunks start at multiples of 64 binding alignments, so a table of one u32 per 256-byte block
 * (AdamW's parameter groups) can be bound at each chunk's offset as well. */
const CHUNK_BLOCKS = 64;

export interface ArenaOptions {
  /** The largest byte range one dispatch may bind (default: the device's
   * maxStorageBufferBindingSize); tests force a small one to exercise the chunks. */
  bindingLimit?: number;
}

/** A byte range of the arena that one dispatch binds. */
export interface ArenaChunk {
  offset: number;
  bytes: number;
}

export interface ArenaSlot {
  param: Tensor;
  /** Byte offset in both arena buffers. */
  offset: number;
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** A buffer outside the pool: it lives as long as the arena. */
function arenaBuffer(bytes: number, label: string): GPUBuffer {
  return device().createBuffer({
    size: bytes,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    label,
  });
}

/** A kept tensor viewing `bytes` of `buffer` at `offset` (not pooled: the arena owns it). */
export function arenaView(buffer: GPUBuffer, offset: number, shape: readonly number[]): Tensor {
  const size = shape.reduce((p, d) => p * d, 1);
  return new Tensor(shape, "f32", new Storage(buffer, offset, Math.max(4, size * 4), false)).keep();
}

export class ParamArena {
  readonly slots: ArenaSlot[];
  /** Bytes of each arena buffer (a multiple of ARENA_ALIGN). */
  readonly bytes: number;
  readonly paramBuffer: GPUBuffer;
  readonly gradBuffer: GPUBuffer;
  /** The whole arenas as flat f32 tensors (padding between slots included, always zero), for
   * reading back; kernels bind `paramChunks` / `gradChunks`, which fit a storage binding. */
  readonly flatParams: Tensor;
  readonly flatGrads: Tensor;
  /** The byte ranges the arena-wide kernels bind: one (the whole arena) where it fits a binding. */
  readonly chunks: ArenaChunk[];
  readonly paramChunks: Tensor[];
  readonly gradChunks: Tensor[];
  #disposed = false;

  /** Move `params` (f32, distinct, each with its own storage) into a new arena. Their current
   * values are copied on the GPU (recorded, not waited for). Build the arena before taking any
   * views of the parameters: a view made earlier keeps the old memory. */
  constructor(params: Tensor[], opts: ArenaOptions = {}) {
    const seen = new Set<Tensor>();
    let at = 0;
    const align = Math.max(ARENA_ALIGN, device().limits.minStorageBufferOffsetAlignment);
    this.slots = params.map((p) => {
      if (p.dtype !== "f32") throw new Error(`arena: parameter ${p.describe()} is not f32`);
      if (p.disposed) throw new Error(`arena: parameter ${p.describe()} is disposed`);
      if (seen.has(p)) throw new Error(`arena: parameter ${p.describe()} listed twice`);
      seen.add(p);
      const slot = { param: p, offset: at };
      at = alignUp(at + Math.max(4, p.size * 4), align);
      return slot;
    });
    this.bytes = Math.max(align, at);
    const maxBuffer = device().limits.maxBufferSize;
    if (this.bytes > maxBuffer) {
      throw new Error(
        `parameter arena of ${this.bytes} bytes exceeds this device's maxBufferSize (${maxBuffer}): ` +
          "freeze part of the model (recipe.frozen) or train on a device with larger buffers",
      );
    }
    const limit = opts.bindingLimit ?? device().limits.maxStorageBufferBindingSize;
    this.chunks = chunkRanges(this.bytes, limit, CHUNK_BLOCKS * align);
    // New buffers are zero-filled by WebGPU, so padding and gradients start at zero.
    this.paramBuffer = arenaBuffer(this.bytes, "param_arena");
    this.gradBuffer = arenaBuffer(this.bytes, "grad_arena");
    for (const { param: p, offset } of this.slots) {
      if (p.size > 0) {
        copy(p.binding, { buffer: this.paramBuffer, offset, size: p.size * 4 }, p.size * 4);
      }
      const old = p.storage;
      p.storage = new Storage(this.paramBuffer, offset, Math.max(4, p.size * 4), false);
      old.release();
      const grad = arenaView(this.gradBuffer, offset, p.shape);
      // A gradient accumulated before the move comes along.
      if (p.grad && !p.grad.disposed && p.grad.size === p.size && p.size > 0) {
        copy(p.grad.binding, grad.binding, p.size * 4);
      }
      p.grad?.dispose();
      p.grad = grad;
      // Materialised (zeros, or the gradient carried over): given, as after torch's
      // zero_grad(set_to_none=False), until zeroGrads says otherwise.
      p.hasGrad = true;
      p.requiresGrad = true;
      p.keep();
    }
    this.flatParams = arenaView(this.paramBuffer, 0, [this.bytes / 4]);
    this.flatGrads = arenaView(this.gradBuffer, 0, [this.bytes / 4]);
    this.paramChunks = this.chunkViews(this.paramBuffer);
    this.gradChunks = this.chunkViews(this.gradBuffer);
  }

  get params(): Tensor[] {
    return this.slots.map((s) => s.param);
  }

  /** Number of f32 words in each arena (a multiple of 64). */
  get words(): number {
    return this.bytes / 4;
  }

  /** Zero every gradient: one recorded dispatch per chunk (one where the arena fits a binding).
   * No parameter has a gradient afterwards (`hasGrad`) until a backward reaches it: torch's
   * default zero_grad(set_to_none=True), whose None gradients AdamW skips. */
  zeroGrads(): void {
    for (const g of this.gradChunks) run(fillKernel(g.size, 0), [], [g]);
    for (const { param } of this.slots) param.hasGrad = false;
  }

  /** Flat f32 views of an arena-shaped buffer, one per chunk (kept: the caller disposes them). */
  chunkViews(buffer: GPUBuffer): Tensor[] {
    return this.chunks.map((c) => arenaView(buffer, c.offset, [c.bytes / 4]));
  }

  /** A new arena-shaped buffer with the same layout (optimiser state), zero-filled. */
  createStateBuffer(label: string): GPUBuffer {
    return arenaBuffer(this.bytes, label);
  }

  /** Per-parameter views into an arena-shaped buffer. */
  viewsOf(buffer: GPUBuffer): Tensor[] {
    return this.slots.map((s) => arenaView(buffer, s.offset, s.param.shape));
  }

  /** Free the arena. Its parameters are disposed with it. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const { param } of this.slots) param.dispose();
    this.flatParams.dispose();
    this.flatGrads.dispose();
    for (const t of [...this.paramChunks, ...this.gradChunks]) t.dispose();
    // Destroying a buffer that unsubmitted commands use would invalidate them: submit first
    // (destroy itself waits for submitted work).
    flush();
    this.paramBuffer.destroy();
    this.gradBuffer.destroy();
  }
}

/** The whole arena as one range where it fits `limit`, else ranges of the largest multiple of
 * `unit` that does (the last one shorter). */
export function chunkRanges(bytes: number, limit: number, unit: number): ArenaChunk[] {
  if (bytes <= limit) return [{ offset: 0, bytes }];
  const step = Math.floor(limit / unit) * unit;
  if (step === 0) {
    throw new Error(
      `arena: a storage binding limit of ${limit} bytes is below one chunk (${unit})`,
    );
  }
  const out: ArenaChunk[] = [];
  for (let offset = 0; offset < bytes; offset += step) {
    out.push({ offset, bytes: Math.min(step, bytes - offset) });
  }
  return out;
}
