// The whole AdamW update (decoupled weight decay, both moments, bias correction) as one kernel
// over a parameter arena, four floats per thread. β1, β2 and ε are fixed for a run and baked in;
// the values that change every step arrive in a 16-byte hyper-parameter binding:
//   hp.x = 1 − lr·weight_decay     (decoupled decay factor)
//   hp.y = lr / (1 − β1^t)         (step size with the first bias correction)
//   hp.z = 1 / sqrt(1 − β2^t)      (second bias correction)
//   hp.w = unused (padding)
// where t is the parameter's own step count (PyTorch keeps one per parameter: the steps in which
// it had a gradient). Where parameters differ in multipliers (parameter groups) or in t, or some
// are to be left alone, there is one such vec4 per distinct (multipliers, t) — at most
// MAX_GROUPS, a whole slot — and a u32 per 64-word arena block names the block's vec4, or is
// SKIP_BLOCK: a parameter without a gradient this step (PyTorch's AdamW skips a None grad: value
// and moments stay as they are). Every parameter starts on a 256-byte (64-word) boundary, so a
// block never mixes two parameters, and the table costs one u32 load per 16 vec4s instead of a
// multiplier per element.

import { cached, f, type Kernel, kernel1d, ro, rw } from "./common.ts";

export interface AdamWSpec {
  /** f32 words in the arena; a multiple of 4. */
  words: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Bind the per-block table: `hp` is then MAX_GROUPS vec4s (a whole slot) and a block may be
   * skipped. Without it `hp` is one vec4 for every word. */
  table?: boolean;
}

/** f32 words per group-table block (ARENA_ALIGN bytes). */
export const GROUP_BLOCK_WORDS = 64;
/** Groups one 256-byte hyper-parameter slot holds (16-byte vec4 each). */
export const MAX_GROUPS = 16;
/** A block-table entry: leave the block's parameter, moments included, untouched. */
export const SKIP_BLOCK = 0xffffffff;

function adamwKernelGen(spec: AdamWSpec): Kernel {
  const { words, beta1, beta2, eps, table = false } = spec;
  if (words % 4 !== 0) throw new Error(`adamw: ${words} words is not a multiple of 4`);
  if (table && words % GROUP_BLOCK_WORDS !== 0) {
    throw new Error(
      `adamw: ${words} words is not a whole number of ${GROUP_BLOCK_WORDS}-word blocks`,
    );
  }
  const n = words / 4;
  const v4 = "vec4<f32>";
  const bindings = [
    ...(table
      ? [ro("hp", `array<${v4}, ${MAX_GROUPS}>`, { bare: true }), ro("block_group", "u32")]
      : [ro("hp", v4, { bare: true })]),
    ro("grad", v4),
    rw("param", v4),
    rw("exp_avg", v4),
    rw("exp_avg_sq", v4),
  ];
  const pick = table
    ? `let code = block_group[i / ${GROUP_BLOCK_WORDS / 4}u];
  if (code == ${SKIP_BLOCK}u) { return; }
  let h = hp[code];`
    : "let h = hp;";
  const body = `${pick}
  let gr = grad[i];
  let m = exp_avg[i] * ${f(beta1)} + gr * ${f(1 - beta1)};
  let v = exp_avg_sq[i] * ${f(beta2)} + gr * gr * ${f(1 - beta2)};
  exp_avg[i] = m;
  exp_avg_sq[i] = v;
  param[i] = param[i] * h.x - h.y * m / (sqrt(v) * h.z + ${f(eps)});`;
  return kernel1d("adamw", bindings, n, body);
}

// Generated once per distinct spec (see cached in common.ts).
export const adamwKernel = cached(adamwKernelGen);
