// Changer's interaction layers (Open-CD's SpatialExchange and ChannelExchange): the two dates'
// features swap every period-th column or channel. Both dates travel as the halves of one
// [2B, C, H, W] tensor (A = samples 0…B−1, B = samples B…2B−1), so one kernel writes both
// outputs and autograd sees a single op; the backward is the same exchange of the gradient.

import { exchangeKernel, type ExchangeMode, type ExchangeSpec } from "../../kernels/exchange.ts";
import { record } from "../autograd.ts";
import { run } from "../launch.ts";
import { empty, type Tensor } from "../tensor.ts";

export type { ExchangeMode };

/**
 * Swap between the halves of x [2B, C, H, W] every column w (mode "spatial") or channel c
 * (mode "channel") with index % int(1/p) == 0, as Open-CD's exchange layers with fraction p
 * (default 1/2: w or c = 0, 2, 4, … swap).
 */
export function exchange(x: Tensor, mode: ExchangeMode, p = 1 / 2): Tensor {
  if (x.ndim !== 4 || x.shape[0] % 2 !== 0 || x.dtype !== "f32") {
    throw new Error(
      `exchange: needs both dates stacked on the batch axis, f32 [2B, C, H, W]; got ${x.describe()}`,
    );
  }
  // Open-CD asserts 0 ≤ p ≤ 1 and takes int(1/p) (p = 0 fails there on the division).
  if (!(p > 0 && p <= 1)) throw new Error(`exchange: p must lie in (0, 1], got ${p}`);
  const [n, channels, h, w] = x.shape;
  const spec: ExchangeSpec = { batch: n / 2, channels, h, w, mode, period: Math.trunc(1 / p) };
  const out = empty(x.shape);
  if (out.size > 0) run(exchangeKernel(spec), [x], [out]);
  return record(out, [x], `${mode}_exchange`, (g) => {
    const dx = empty(x.shape);
    if (dx.size > 0) run(exchangeKernel(spec), [g], [dx]);
    return [dx];
  });
}
