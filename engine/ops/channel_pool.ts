// Channel pooling for CBAM-style spatial attention (IFN): cat(mean over C, max over C) per
// pixel, as `torch.cat([x.mean(1, keepdim=True), x.max(1, keepdim=True)[0]], 1)`, in one pass
// (kernels/channel_pool.ts). The max's gradient goes to the channel that gave it.

import {
  channelMeanMaxGradKernel,
  channelMeanMaxKernel,
  type ChannelPoolSpec,
} from "../../kernels/channel_pool.ts";
import { record } from "../autograd.ts";
import { run } from "../launch.ts";
import { empty, type Tensor } from "../tensor.ts";

/** x [B, C, H, W] f32 → [B, 2, H, W]: channel 0 the mean over C, channel 1 the max. */
export function channelMeanMax(x: Tensor): Tensor {
  if (x.ndim !== 4 || x.dtype !== "f32" || x.shape[1] < 1) {
    throw new Error(`channelMeanMax: needs f32 [B, C ≥ 1, H, W], got ${x.describe()}`);
  }
  const [batch, channels, h, w] = x.shape;
  const spec: ChannelPoolSpec = { batch, channels, plane: h * w };
  const out = empty([batch, 2, h, w]);
  const arg = empty([batch, h, w], "u32");
  if (out.size > 0) run(channelMeanMaxKernel(spec), [x], [out, arg]);
  record(out, [x], "channel_mean_max", (g) => {
    const dx = empty(x.shape);
    if (dx.size > 0) run(channelMeanMaxGradKernel(spec), [g, arg], [dx]);
    return [dx];
  });
  // Without a tape the argmax has no reader: give its memory back now.
  if (!out.requiresGrad) arg.dispose();
  return out;
}
