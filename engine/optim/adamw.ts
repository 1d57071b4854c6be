// AdamW (PyTorch semantics: decoupled weight decay p ← p·(1 − lr·wd), bias-corrected moments)
// over a parameter arena, so a step is one recorded dispatch whatever the number of parameters.
//
// The learning rate and the step count change every step but the kernel text must not (it is
// compiled once), so they reach the GPU through a small hyper-parameter buffer written with
// queue.writeBuffer. Such a write takes effect at once on the queue, before any work recorded
// earlier but not yet submitted; one shared buffer would therefore let step k+1's values
// overwrite step k's before step k ran. Each step takes its own 256-byte slot of a ring instead
// (slot_ring.ts: reused only once a submit has carried the dispatch that read it).
//
// Parameter groups (Open-CD's paramwise_cfg, see param_groups.ts): each parameter may carry an LR
// and a weight-decay multiplier. Parameters sharing a pair form a group; the slot then holds one
// vec4 per group and a small per-64-word-block table names each block's group (kernels/adamw.ts),
// so the step stays one dispatch and the optimiser-state files keep the same keys.
//
// An arena larger than one storage binding (arena.ts `chunks`) takes one dispatch per chunk: the
// moments, gradients, parameters and the block table are each bound at the chunk's offset.

import { adamwKernel, GROUP_BLOCK_WORDS, MAX_GROUPS } from "../../kernels/adamw.ts";
import { ARENA_ALIGN, ParamArena } from "../arena.ts";
import { device } from "../device.ts";
import type { Kernel } from "../../kernels/common.ts";
import { run } from "../launch.ts";
import { copy, flush } from "../recorder.ts";
import { SlotRing } from "../slot_ring.ts";
import { type Tensor, tensor } from "../tensor.ts";

export interface AdamWOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  /** Per parameter (same order as the parameters): LR and weight-decay multipliers, as torch
   * param groups with lr = lr·lrMult and weight_decay = weightDecay·decayMult. Default: all 1. */
  multipliers?: readonly { lrMult: number; decayMult: number }[];
}

const RING = 16;

export class AdamW {
  readonly arena: ParamArena;
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** Steps taken so far (PyTorch's `step`). */
  t = 0;
  readonly #m: GPUBuffer;
  readonly #v: GPUBuffer;
  /** The moments' chunk views (arena.chunks). */
  readonly #mChunks: Tensor[];
  readonly #vChunks: Tensor[];
  readonly #ring: GPUBuffer;
  /** Which slot of #ring each step writes its hyper-parameters to. */
  readonly #slots = new SlotRing(RING);
  /** One kernel per chunk (at most two distinct: the full chunks and the last). */
  readonly #kernels: Kernel[];
  /** Distinct (lrMult, decayMult) pairs; each parameter's index into it. */
  readonly groups: { lrMult: number; decayMult: number }[];
  readonly groupOf: number[];
  /** u32 per 64-word arena block: its group (only with more than one group). */
  readonly #blockGroups: GPUBuffer | null = null;

  /** Pass the parameters (moved into a new arena) or an existing arena. */
  constructor(params: Tensor[] | ParamArena, opts: AdamWOptions) {
    const { lr, betas = [0.9, 0.999], eps = 1e-8, weightDecay = 0.01 } = opts;
    for (const [name, v] of [["lr", lr], ["eps", eps], ["weightDecay", weightDecay]] as const) {
      if (!(v >= 0)) throw new Error(`AdamW: ${name} must be ≥ 0, got ${v}`);
    }
    if (!betas.every((b) => b >= 0 && b < 1)) {
      throw new Error(`AdamW: betas must lie in [0, 1), got ${betas}`);
    }
    this.arena = params instanceof ParamArena ? params : new ParamArena(params);
    this.lr = lr;
    [this.beta1, this.beta2] = betas;
    this.eps = eps;
    this.weightDecay = weightDecay;
    this.#m = this.arena.createStateBuffer("adamw_exp_avg");
    this.#v = this.arena.createStateBuffer("adamw_exp_avg_sq");
    this.#mChunks = this.arena.chunkViews(this.#m);
    this.#vChunks = this.arena.chunkViews(this.#v);
    this.#ring = device().createBuffer({
      size: RING * ARENA_ALIGN,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      label: "adamw_hyper",
    });
    ({ groups: this.groups, groupOf: this.groupOf } = groupParams(this.arena, opts.multipliers));
    if (this.groups.length > 1) this.#blockGroups = this.#uploadBlockGroups();
    this.#kernels = this.arena.chunks.map((c) =>
      adamwKernel({
        words: c.bytes / 4,
        beta1: this.beta1,
        beta2: this.beta2,
        eps,
        groups: this.groups.length,
      })
    );
  }

  get params(): Tensor[] {
    return this.arena.params;
  }

  #uploadBlockGroups(): GPUBuffer {
    const table = new Uint32Array(this.arena.words / GROUP_BLOCK_WORDS);
    this.arena.slots.forEach(({ param, offset }, i) => {
      const first = offset / 4 / GROUP_BLOCK_WORDS;
      const end = Math.ceil((offset / 4 + Math.max(1, param.size)) / GROUP_BLOCK_WORDS);
      table.fill(this.groupOf[i], first, end);
    });
    const buf = device().createBuffer({
      size: Math.max(16, table.byteLength),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      label: "adamw_block_groups",
    });
    device().queue.writeBuffer(buf, 0, table);
    return buf;
  }

  /** Zero every gradient (one dispatch). */
  zeroGrad(): void {
    this.arena.zeroGrads();
  }

  /** Record one update of every parameter; `lr` (if given) becomes the learning rate from now
   * on, as schedules set it. Nothing waits on the GPU. */
  step(lr?: number): void {
    if (lr !== undefined) {
      if (!(lr >= 0)) throw new Error(`AdamW.step: lr must be ≥ 0, got ${lr}`);
      this.lr = lr;
    }
    for (const { param } of this.arena.slots) {
      if (param.grad?.storage.buffer !== this.arena.gradBuffer) {
        throw new Error(
          `AdamW: the gradient of ${param.describe()} was replaced; it must stay the arena view ` +
            "(zero gradients with zeroGrad(), never set .grad = null)",
        );
      }
    }
    this.t++;
    const bc1 = 1 - this.beta1 ** this.t;
    const bc2 = 1 - this.beta2 ** this.t;
    const hyper = new Float32Array(this.groups.flatMap(({ lrMult, decayMult }) => {
      const lr = this.lr * lrMult;
      return [1 - lr * this.weightDecay * decayMult, lr / bc1, 1 / Math.sqrt(bc2), 0];
    }));
    const offset = this.#slots.take() * ARENA_ALIGN;
    device().queue.writeBuffer(this.#ring, offset, hyper);
    const hp = { buffer: this.#ring, offset, size: hyper.byteLength };
    const blocks = this.#blockGroups;
    this.arena.chunks.forEach((c, k) => {
      // The chunk's entries of the block table: one u32 (4 bytes) per block of GROUP_BLOCK_WORDS
      // words (4·GROUP_BLOCK_WORDS bytes), so its byte offset is the chunk's / GROUP_BLOCK_WORDS.
      const table = blocks
        ? [{
          buffer: blocks,
          offset: c.offset / GROUP_BLOCK_WORDS,
          size: c.bytes / GROUP_BLOCK_WORDS,
        }]
        : [];
      run(
        this.#kernels[k],
        [hp, ...table, this.arena.gradChunks[k]],
        [this.arena.paramChunks[k], this.#mChunks[k], this.#vChunks[k]],
      );
    });
  }

  /**
   * The optimiser state as tensors, for checkpoints: `exp_avg.<i>` and `exp_avg_sq.<i>` (views
   * of the i-th parameter's moments, sharing the optimiser's memory) and `step` (a new i32 [1]
   * tensor). To resume: `const s = opt.state(); loadInto(s, file); await opt.loadState(s);`.
   */
  state(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    const ms = this.arena.viewsOf(this.#m);
    const vs = this.arena.viewsOf(this.#v);
    ms.forEach((m, i) => out[`exp_avg.${i}`] = m);
    vs.forEach((v, i) => out[`exp_avg_sq.${i}`] = v);
    out.step = tensor([this.t], [1], "i32");
    return out;
  }

  /** Restore state saved with state() (the moments are copied on the GPU; `step` is read back,
   * which waits for the GPU once). */
  async loadState(s: Map<string, Tensor> | Record<string, Tensor>): Promise<void> {
    const get = (k: string) => (s instanceof Map ? s.get(k) : s[k]);
    const problems: string[] = [];
    const step = get("step");
    if (!step || step.size !== 1) problems.push("step: missing or not one value");
    this.arena.slots.forEach(({ param }, i) => {
      for (const k of [`exp_avg.${i}`, `exp_avg_sq.${i}`]) {
        const t = get(k);
        if (!t) problems.push(`${k}: missing`);
        else if (t.dtype !== "f32" || t.size !== param.size) {
          problems.push(`${k}: ${t.describe()} does not match parameter ${param.describe()}`);
        }
      }
    });
    if (problems.length) throw new Error(`AdamW.loadState: ${problems.join("; ")}`);
    this.arena.slots.forEach(({ param, offset }, i) => {
      const bytes = param.size * 4;
      for (const [k, buf] of [[`exp_avg.${i}`, this.#m], [`exp_avg_sq.${i}`, this.#v]] as const) {
        const src = get(k)!.binding;
        // The views from state() are already in place (e.g. after loadInto).
        if (bytes === 0 || (src.buffer === buf && src.offset === offset)) continue;
        copy(src, { buffer: buf, offset, size: bytes }, bytes);
      }
    });
    const t = await step!.item();
    if (!Number.isInteger(t) || t < 0) throw new Error(`AdamW.loadState: bad step ${t}`);
    this.t = t;
  }

  /** Free the optimiser state. The parameters stay usable: they live in `arena`, which the
   * model's owner frees with `opt.arena.dispose()` when done with them. */
  dispose(): void {
    flush();
    for (const t of [...this.#mChunks, ...this.#vChunks]) t.dispose();
    this.#m.destroy();
    this.#v.destroy();
    this.#ring.destroy();
    this.#blockGroups?.destroy();
  }
}

/** Distinct multiplier pairs (first-seen order) and each parameter's group. */
function groupParams(
  arena: ParamArena,
  mults: AdamWOptions["multipliers"],
): { groups: { lrMult: number; decayMult: number }[]; groupOf: number[] } {
  const n = arena.slots.length;
  if (mults && mults.length !== n) {
    throw new Error(`AdamW: ${mults.length} multiplier pairs for ${n} parameters`);
  }
  const groups: { lrMult: number; decayMult: number }[] = [];
  const index = new Map<string, number>();
  const groupOf = arena.slots.map((_, i) => {
    const { lrMult, decayMult } = mults?.[i] ?? { lrMult: 1, decayMult: 1 };
    if (!(lrMult >= 0 && decayMult >= 0 && Number.isFinite(lrMult + decayMult))) {
      throw new Error(`AdamW: parameter ${i}: multipliers must be finite and ≥ 0`);
    }
    const key = `${lrMult}/${decayMult}`;
    if (!index.has(key)) {
      index.set(key, groups.length);
      groups.push({ lrMult, decayMult });
    }
    return index.get(key)!;
  });
  if (groups.length === 0) groups.push({ lrMult: 1, decayMult: 1 });
  if (groups.length > MAX_GROUPS) {
    throw new Error(
      `AdamW: ${groups.length} distinct (lrMult, decayMult) pairs; at most ${MAX_GROUPS} fit one step's hyper-parameter slot`,
    );
  }
  return { groups, groupOf };
}
