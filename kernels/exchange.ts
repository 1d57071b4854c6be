// Feature exchange between the two dates of a change detector (Changer, Fang et al. 2023; Open-CD's
// SpatialExchange / ChannelExchange): the two dates are the halves of one [2B, C, H, W] tensor, and
// one thread per element of a half swaps or keeps its pair, so both outputs come from one pass.
// The exchange is its own transpose, so the same kernel applied to the gradient is the backward.

import { cached, type Kernel, kernel1d, ro, rw } from "./common.ts";

export type ExchangeMode = "spatial" | "channel";

export interface ExchangeSpec {
  /** Samples per date (B of [2B, C, H, W]). */
  batch: number;
  channels: number;
  h: number;
  w: number;
  /** "spatial": columns w with w % period == 0 swap; "channel": channels c with c % period == 0. */
  mode: ExchangeMode;
  /** Open-CD's int(1/p) (2 for p = 1/2). */
  period: number;
}

/** x [2B, C, H, W] → out [2B, C, H, W] with the selected columns or channels of the halves
 * swapped. */
function exchangeKernelGen(s: ExchangeSpec): Kernel {
  if (!(Number.isInteger(s.period) && s.period >= 1)) {
    throw new Error(`exchange: period must be a whole number ≥ 1, got ${s.period}`);
  }
  const half = s.batch * s.channels * s.h * s.w;
  const index = s.mode === "spatial" ? `i % ${s.w}u` : `(i / ${s.h * s.w}u) % ${s.channels}u`;
  return kernel1d(
    `${s.mode}_exchange`,
    [ro("x"), rw("out")],
    half,
    `let swap = (${index}) % ${s.period}u == 0u;
  let a = x[i];
  let b = x[i + ${half}u];
  out[i] = select(a, b, swap);
  out[i + ${half}u] = select(b, a, swap);`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const exchangeKernel = cached(exchangeKernelGen);
