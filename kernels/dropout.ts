// Dropout with a counter-based generator: each mask unit (an element, or a whole channel plane
// for dropout2d) keeps or drops by a hash of (seed, unit index), so the same seed regenerates
// the same mask in backward and nothing is stored. The seed arrives in a small binding, not in
// the code, so one pipeline serves every step.

import { cached, f, type Kernel, kernel1d, ro, rw } from "./common.ts";

export interface DropoutSpec {
  /** Elements of x. */
  n: number;
  /** Drop probability, 0 ≤ p < 1. */
  p: number;
  /** Consecutive elements sharing one mask decision: 1 (dropout) or H·W (dropout2d). */
  unit: number;
  /** Apply ReLU first (fused: one pass instead of two). */
  relu?: boolean;
}

/** WGSL: a 32-bit integer finaliser (xor-shift-multiply), a bijection with good avalanche. */
export const MIX32_WGSL = `fn mix32(v: u32) -> u32 {
  var h = v;
  h ^= h >> 16u;
  h *= 0x21f0aaadu;
  h ^= h >> 15u;
  h *= 0x735a2d97u;
  h ^= h >> 15u;
  return h;
}
fn unit_hash(seed: u32, unit: u32) -> u32 {
  // seed enters before and after the counter, so different seeds give unrelated streams
  // rather than shifted copies of one
  return mix32(mix32(unit + mix32(seed)) ^ mix32(seed ^ 0x9e3779b9u));
}`;

/** Units with a hash below this are dropped: round(p·2³²). */
export function dropThreshold(p: number): number {
  return Math.min(0xffffffff, Math.round(p * 2 ** 32));
}

/** y = keep ? x / (1 − p) : 0; inputs x, seed (u32, first word used); output y. Applied to the
 * incoming gradient with the same seed it is its own backward. */
function dropoutKernelGen(s: DropoutSpec): Kernel {
  if (!(s.p >= 0 && s.p < 1)) throw new Error(`dropout: p must lie in [0, 1), got ${s.p}`);
  // Four elements of one mask unit per thread when units allow: one hash, vec4 loads/stores.
  const lanes = s.n % 4 === 0 && s.unit % 4 === 0 ? 4 : 1;
  const V = lanes === 4 ? "vec4<f32>" : "f32";
  const per = s.unit / lanes;
  const unit = per === 1 ? "i" : `i / ${per}u`;
  return kernel1d(
    (s.relu ? "relu_" : "") + (s.unit === 1 ? "dropout" : "dropout2d"),
    [ro("x", V), ro("seed", "u32", { count: 1 }), rw("y", V)],
    s.n / lanes,
    `let keep = unit_hash(seed[0], ${unit}) >= ${dropThreshold(s.p)}u;
  y[i] = select(${V}(0.0), ${s.relu ? `max(x[i], ${V}(0.0))` : "x[i]"} * ${
      f(1 / (1 - s.p))
    }, keep);`,
    MIX32_WGSL,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const dropoutKernel = cached(dropoutKernelGen);
