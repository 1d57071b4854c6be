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
// vec4 per group and a small per-64-word-block table names each block's vec4 (kernels/adamw.ts),
// so the step stays one dispatch and the optimiser-state files keep the same keys.
//
// Parameters without a gradient: PyTorch's AdamW skips a parameter whose .grad is None (no
// decay, no moments, and its own step count does not advance), e.g. modules built but never
// called. Here every .grad is arena memory, so backward marks the leaves it reaches (`hasGrad`,
// cleared by zeroGrad); a step gives the others SKIP_BLOCK in the block table and counts the
// step they sat out (`skipped_steps` in the state), and a parameter's bias correction uses its
// own count. The table is written only when what it says changes — in training, at the first
// step — after submitting the work recorded before (a write lands ahead of unsubmitted work);
// a step where every parameter has a gradient and one group binds no table at all.
//
// An arena larger than one storage binding (arena.ts `chunks`) takes one dispatch per chunk: the
// moments, gradients, parameters and the block table are each bound at the chunk's offset.

import { adamwKernel, GROUP_BLOCK_WORDS, MAX_GROUPS, SKIP_BLOCK } from "../../kernels/adamw.ts";
import { ARENA_ALIGN, ParamArena } from "../arena.ts";
import { device } from "../device.ts";
import type { Kernel } from "../../kernels/common.ts";
import { run } from "../launch.ts";
import { copy, flush, pending } from "../recorder.ts";
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

/** The optimiser-state key of the per-parameter skipped-step counts. Files saved before it
 * existed lack it (their runs stepped every parameter): load them with
 * `loadInto(opt.state(), file, { optional: AdamW.optionalState })`. */
const SKIPPED = "skipped_steps";

export class AdamW {
  /** State keys a file may lack (see SKIPPED). */
  static readonly optionalState: readonly string[] = [SKIPPED];
  readonly arena: ParamArena;
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** Steps taken so far. PyTorch's `step` of parameter i is t − skippedSteps[i]. */
  t = 0;
  /** Per parameter: the steps it had no gradient in (not decayed, moments kept). */
  readonly #skipped: Int32Array;
  readonly #m: GPUBuffer;
  readonly #v: GPUBuffer;
  /** The moments' chunk views (arena.chunks). */
  readonly #mChunks: Tensor[];
  readonly #vChunks: Tensor[];
  readonly #ring: GPUBuffer;
  /** Which slot of #ring each step writes its hyper-parameters to. */
  readonly #slots = new SlotRing(RING);
  /** One kernel per chunk (at most two distinct: the full chunks and the last), without and
   * with the block table. */
  readonly #kernels: Kernel[];
  #tableKernels: Kernel[] | null = null;
  /** Distinct (lrMult, decayMult) pairs; each parameter's index into it. */
  readonly groups: { lrMult: number; decayMult: number }[];
  readonly groupOf: number[];
  /** u32 per 64-word arena block: its vec4 of the slot, or SKIP_BLOCK (made when first needed). */
  #blockTable: GPUBuffer | null = null;
  /** Per parameter, the vec4 (or −1: skipped) that #blockTable holds now. */
  #tableCodes: Int32Array | null = null;

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
    this.#skipped = new Int32Array(this.arena.slots.length);
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
    this.#kernels = this.#chunkKernels(false);
  }

  get params(): Tensor[] {
    return this.arena.params;
  }

  /** Per parameter: the steps so far in which it had no gradient and was left alone. */
  get skippedSteps(): readonly number[] {
    return Array.from(this.#skipped);
  }

  #chunkKernels(table: boolean): Kernel[] {
    const { beta1, beta2, eps } = this;
    return this.arena.chunks.map((c) =>
      adamwKernel({ words: c.bytes / 4, beta1, beta2, eps, table })
    );
  }

  /** Make the block table say `codes` (per parameter: its vec4, or −1 to skip), if it does not
   * already. The write lands before any unsubmitted work, so that is submitted first. */
  #writeBlockTable(codes: Int32Array): void {
    const now = this.#tableCodes;
    if (now && now.every((c, i) => c === codes[i])) return;
    const table = new Uint32Array(this.arena.words / GROUP_BLOCK_WORDS).fill(SKIP_BLOCK);
    this.arena.slots.forEach(({ param, offset }, i) => {
      if (codes[i] < 0) return;
      const first = offset / 4 / GROUP_BLOCK_WORDS;
      const end = Math.ceil((offset / 4 + Math.max(1, param.size)) / GROUP_BLOCK_WORDS);
      table.fill(codes[i], first, end);
    });
    this.#blockTable ??= device().createBuffer({
      size: Math.max(16, table.byteLength),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      label: "adamw_block_table",
    });
    if (pending() > 0) flush();
    device().queue.writeBuffer(this.#blockTable, 0, table);
    this.#tableCodes = codes;
  }

  /** Zero every gradient (one dispatch); no parameter has a gradient until a backward reaches
   * it (torch's zero_grad(), set_to_none). */
  zeroGrad(): void {
    this.arena.zeroGrads();
  }

  /** Record one update of every parameter that has a gradient (`hasGrad`: reached by a backward
   * since zeroGrad, or never zeroed); the others stay as they are, moments included, as torch
   * skips a None grad. `lr` (if given) becomes the learning rate from now on, as schedules set
   * it. Nothing waits on the GPU. */
  step(lr?: number): void {
    if (lr !== undefined) {
      if (!(lr >= 0)) throw new Error(`AdamW.step: lr must be ≥ 0, got ${lr}`);
      this.lr = lr;
    }
    const slots = this.arena.slots;
    for (const { param } of slots) {
      if (param.grad?.storage.buffer !== this.arena.gradBuffer) {
        throw new Error(
          `AdamW: the gradient of ${param.describe()} was replaced; it must stay the arena view ` +
            "(zero gradients with zeroGrad(), never set .grad = null)",
        );
      }
    }
    // One vec4 per distinct (group, own step count) among the parameters stepped now.
    const t = this.t + 1;
    const classes: { group: number; steps: number }[] = [];
    const index = new Map<string, number>();
    const codes = new Int32Array(slots.length);
    slots.forEach(({ param }, i) => {
      if (!param.hasGrad) return void (codes[i] = -1);
      const group = this.groupOf[i], steps = t - this.#skipped[i];
      const key = `${group}/${steps}`;
      if (!index.has(key)) {
        index.set(key, classes.length);
        classes.push({ group, steps });
      }
      codes[i] = index.get(key)!;
    });
    if (classes.length > MAX_GROUPS) {
      throw new Error(
        `AdamW: ${classes.length} distinct (multipliers, step count) pairs among the parameters ` +
          `with a gradient; at most ${MAX_GROUPS} fit one step's hyper-parameter slot`,
      );
    }
    this.t = t;
    codes.forEach((c, i) => c < 0 && this.#skipped[i]++);
    if (classes.length === 0) return;
    const tabled = classes.length > 1 || codes.includes(-1);
    if (tabled) this.#writeBlockTable(codes);
    const hyper = new Float32Array(classes.flatMap(({ group, steps }) => {
      const { lrMult, decayMult } = this.groups[group];
      const lr = this.lr * lrMult;
      const bc1 = 1 - this.beta1 ** steps;
      const bc2 = 1 - this.beta2 ** steps;
      return [1 - lr * this.weightDecay * decayMult, lr / bc1, 1 / Math.sqrt(bc2), 0];
    }));
    const offset = this.#slots.take() * ARENA_ALIGN;
    device().queue.writeBuffer(this.#ring, offset, hyper);
    // With the table the kernel reads a whole slot (MAX_GROUPS vec4s), of which `hyper` is the
    // start; the table names no vec4 beyond it.
    const hp = { buffer: this.#ring, offset, size: tabled ? ARENA_ALIGN : hyper.byteLength };
    const kernels = tabled ? (this.#tableKernels ??= this.#chunkKernels(true)) : this.#kernels;
    this.arena.chunks.forEach((c, k) => {
      // The chunk's entries of the block table: one u32 (4 bytes) per block of GROUP_BLOCK_WORDS
      // words (4·GROUP_BLOCK_WORDS bytes), so its byte offset is the chunk's / GROUP_BLOCK_WORDS.
      const table = tabled
        ? [{
          buffer: this.#blockTable!,
          offset: c.offset / GROUP_BLOCK_WORDS,
          size: c.bytes / GROUP_BLOCK_WORDS,
        }]
        : [];
      run(
        kernels[k],
        [hp, ...table, this.arena.gradChunks[k]],
        [this.arena.paramChunks[k], this.#mChunks[k], this.#vChunks[k]],
      );
    });
  }

  /**
   * The optimiser state as tensors, for checkpoints: `exp_avg.<i>` and `exp_avg_sq.<i>` (views
   * of the i-th parameter's moments, sharing the optimiser's memory), `step` (a new i32 [1]
   * tensor) and `skipped_steps` (a new i32 [parameters] tensor: the steps each sat out without a
   * gradient). To resume: `const s = opt.state(); loadInto(s, file, { optional:
   * AdamW.optionalState }); await opt.loadState(s);`.
   */
  state(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    const ms = this.arena.viewsOf(this.#m);
    const vs = this.arena.viewsOf(this.#v);
    ms.forEach((m, i) => out[`exp_avg.${i}`] = m);
    vs.forEach((v, i) => out[`exp_avg_sq.${i}`] = v);
    out.step = tensor([this.t], [1], "i32");
    out[SKIPPED] = tensor(this.#skipped, [this.#skipped.length], "i32");
    return out;
  }

  /** Restore state saved with state() (the moments are copied on the GPU; `step` and
   * `skipped_steps` are read back, which waits for the GPU). Without `skipped_steps` no
   * parameter has skipped a step. */
  async loadState(s: Map<string, Tensor> | Record<string, Tensor>): Promise<void> {
    const get = (k: string) => (s instanceof Map ? s.get(k) : s[k]);
    const problems: string[] = [];
    const step = get("step");
    if (!step || step.size !== 1) problems.push("step: missing or not one value");
    const skipped = get(SKIPPED);
    const n = this.arena.slots.length;
    if (skipped && (skipped.dtype !== "i32" || skipped.size !== n)) {
      problems.push(`${SKIPPED}: ${skipped.describe()} is not one i32 per parameter (${n})`);
    }
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
    const counts = skipped && n > 0 ? await skipped.read() : new Int32Array(n);
    const bad = counts.findIndex((c) => !(c >= 0 && c <= t));
    if (bad >= 0) {
      throw new Error(`AdamW.loadState: parameter ${bad} skipped ${counts[bad]} of ${t} steps`);
    }
    this.t = t;
    this.#skipped.set(counts);
  }

  /** Free the optimiser state. The parameters stay usable: they live in `arena`, which the
   * model's owner frees with `opt.arena.dispose()` when done with them. */
  dispose(): void {
    flush();
    for (const t of [...this.#mChunks, ...this.#vChunks]) t.dispose();
    this.#m.destroy();
    this.#v.destroy();
    this.#ring.destroy();
    this.#blockTable?.destroy();
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
