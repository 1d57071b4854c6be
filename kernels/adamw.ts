// The whole AdamW update (decoupled weight decay, both moments, bias correction) as one kernel
// over a parameter arena, four floats per thread. β1, β2 and ε are fixed for a run and baked in;
// the values that change every step arrive in a 16-byte hyper-parameter binding:
//   hp.x = 1 − lr·weight_decay     (decoupled decay factor)
//   hp.y = lr / (1 − β1^t)         (step size with the first bias correction)
//   hp.z = 1 / sqrt(1 − β2^t)      (second bias correction)
//   hp.w = unused (padding)

import { cached, f, grid1d, type Kernel } from "./common.ts";

export interface AdamWSpec {
  /** f32 words in the arena; a multiple of 4. */
  words: number;
  beta1: number;
  beta2: number;
  eps: number;
}

function adamwKernelGen(spec: AdamWSpec): Kernel {
  const { words, beta1, beta2, eps } = spec;
  if (words % 4 !== 0) throw new Error(`adamw: ${words} words is not a multiple of 4`);
  const n = words / 4;
  const g = grid1d(n);
  const code = `@group(0) @binding(0) var<storage, read> hp: vec4<f32>;
@group(0) @binding(1) var<storage, read> grad: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> param: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> exp_avg: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> exp_avg_sq: array<vec4<f32>>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = ${g.index};
  if (i >= ${n}u) { return; }
  let h = hp;
  let gr = grad[i];
  let m = exp_avg[i] * ${f(beta1)} + gr * ${f(1 - beta1)};
  let v = exp_avg_sq[i] * ${f(beta2)} + gr * gr * ${f(1 - beta2)};
  exp_avg[i] = m;
  exp_avg_sq[i] = v;
  param[i] = param[i] * h.x - h.y * m / (sqrt(v) * h.z + ${f(eps)});
}`;
  return { name: "adamw", code, workgroups: g.workgroups };
}

// Generated once per distinct spec (see cached in common.ts).
export const adamwKernel = cached(adamwKernelGen);
