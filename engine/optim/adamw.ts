// AdamW (PyTorch semantics: decoupled weight decay p ← p·(1 − lr·wd), bias-corrected moments)
// over a parameter arena, so a step is one recorded dispatch whatever the number of parameters.
//
// The learning rate and the step count change every step but the kernel text must not (it is
// compiled once), so they reach the GPU through a small hyper-parameter buffer written with
// queue.writeBuffer. Such a write takes effect at once on the queue, before any work recorded
// earlier but not yet submitted; one shared buffer would therefore let step k+1's values
// overwrite step k's before step k ran. Each step takes its own 256-byte slot of a ring instead
// (slot_ring.ts: reused only once a submit has carried the dispatch that read it).

import { adamwKernel } from "../../kernels/adamw.ts";
import { ARENA_ALIGN, arenaView, ParamArena } from "../arena.ts";
import { device } from "../device.ts";
import { copy, dispatch, flush } from "../recorder.ts";
import { SlotRing } from "../slot_ring.ts";
import { type Tensor, tensor } from "../tensor.ts";

export interface AdamWOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

const RING = 16;
const HYPER_BYTES = 16;

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
  readonly #flatM: Tensor;
  readonly #flatV: Tensor;
  readonly #ring: GPUBuffer;
  /** Which slot of #ring each step writes its hyper-parameters to. */
  readonly #slots = new SlotRing(RING);
  readonly #code: string;
  readonly #workgroups: [number, number, number];

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
    this.#flatM = arenaView(this.#m, 0, [this.arena.words]);
    this.#flatV = arenaView(this.#v, 0, [this.arena.words]);
    this.#ring = device().createBuffer({
      size: RING * ARENA_ALIGN,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      label: "adamw_hyper",
    });
    const k = adamwKernel({ words: this.arena.words, beta1: this.beta1, beta2: this.beta2, eps });
    this.#code = k.code;
    this.#workgroups = k.workgroups;
  }

  get params(): Tensor[] {
    return this.arena.params;
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
    const hyper = new Float32Array([
      1 - this.lr * this.weightDecay,
      this.lr / bc1,
      1 / Math.sqrt(bc2),
      0,
    ]);
    const offset = this.#slots.take() * ARENA_ALIGN;
    device().queue.writeBuffer(this.#ring, offset, hyper);
    dispatch("adamw", this.#code, [
      { buffer: this.#ring, offset, size: HYPER_BYTES },
      this.arena.flatGrads.binding,
      this.arena.flatParams.binding,
      this.#flatM.binding,
      this.#flatV.binding,
    ], this.#workgroups);
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
    this.#flatM.dispose();
    this.#flatV.dispose();
    this.#m.destroy();
    this.#v.destroy();
    this.#ring.destroy();
  }
}
