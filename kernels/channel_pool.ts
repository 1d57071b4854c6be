// CBAM's spatial-attention input (IFN's SpatialAttention): per pixel, the mean and the max over
// the channels, one thread per pixel looping over C (adjacent threads read adjacent pixels of a
// channel plane). The forward records the argmax channel, so the backward is one pass over x's
// elements: dx = g_mean / C, plus g_max at the argmax (the first maximum, as torch.max's index).

import { cached, type Kernel, kernel1d, ro, rw } from "./common.ts";

export interface ChannelPoolSpec {
  batch: number;
  channels: number;
  /** H·W. */
  plane: number;
}

/** x [B, C, H, W] → out [B, 2, H, W] (mean, max over C), arg [B, H, W] u32 (argmax). */
function channelMeanMaxKernelGen(s: ChannelPoolSpec): Kernel {
  const { channels: c, plane: p } = s;
  return kernel1d(
    "channel_mean_max",
    [ro("x"), rw("out"), rw("arg", "u32")],
    s.batch * p,
    `let b = i / ${p}u;
  let q = i % ${p}u;
  let base = b * ${c * p}u + q;
  var total = 0.0;
  var best = x[base];
  var at = 0u;
  for (var k = 0u; k < ${c}u; k++) {
    let v = x[base + k * ${p}u];
    total += v;
    if (v > best) {
      best = v;
      at = k;
    }
  }
  out[b * ${2 * p}u + q] = total / ${c}.0;
  out[b * ${2 * p}u + ${p}u + q] = best;
  arg[i] = at;`,
  );
}

/** g [B, 2, H, W], arg [B, H, W] → dx [B, C, H, W]. */
function channelMeanMaxGradKernelGen(s: ChannelPoolSpec): Kernel {
  const { channels: c, plane: p } = s;
  return kernel1d(
    "channel_mean_max_grad",
    [ro("g"), ro("arg", "u32"), rw("dx")],
    s.batch * c * p,
    `let q = i % ${p}u;
  let k = (i / ${p}u) % ${c}u;
  let b = i / ${c * p}u;
  let gi = b * ${2 * p}u + q;
  dx[i] = g[gi] / ${c}.0 + select(0.0, g[gi + ${p}u], arg[b * ${p}u + q] == k);`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const channelMeanMaxKernel = cached(channelMeanMaxKernelGen);
export const channelMeanMaxGradKernel = cached(channelMeanMaxGradKernelGen);
