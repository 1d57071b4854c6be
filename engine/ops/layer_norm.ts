// Layer normalisation over the last dimension ([B, L, C] tokens) and over the channel dimension
// of NCHW (layerNorm2d, as ConvNeXt-style blocks use it), with backward.

import { type RowLayout, rowNormGradKernel, rowNormKernel } from "../../kernels/layer_norm.ts";
import {
  tokenNormGradGroups,
  tokenNormGradIters,
  tokenNormGradKernel,
  tokenNormKernel,
} from "../../kernels/layer_norm_tokens.ts";
import { prod } from "../../kernels/common.ts";
import { record, ruleIgnoresOutput } from "../autograd.ts";
import { type Operand, run } from "../launch.ts";
import { empty, type Tensor, view } from "../tensor.ts";
import { planeLayout, planeSums } from "./norm.ts";
import { sum } from "./reduce.ts";

export interface LayerNormOptions {
  weight?: Tensor | null;
  bias?: Tensor | null;
  eps?: number;
}

/** Sums each of `ts` (shaped like x) over everything but the normalised dimension: the
 * parameter gradients. */
type ParamSums = (ts: Tensor[]) => Tensor[];

function rowNorm(
  name: string,
  x: Tensor,
  l: RowLayout,
  paramSums: ParamSums,
  o: LayerNormOptions,
): Tensor {
  const { eps = 1e-5 } = o;
  const weight = o.weight ?? null, bias = o.bias ?? null;
  for (const [t, what] of [[weight, "weight"], [bias, "bias"]] as const) {
    if (t && t.size !== l.len) throw new Error(`${name} ${what} ${t.describe()}: needs ${l.len}`);
  }
  const y = empty(x.shape);
  const mean = empty([l.rows]);
  const rstd = empty([l.rows]);
  run(
    rowNormKernel({ layout: l, eps, weight: !!weight, bias: !!bias }),
    [x, ...(weight ? [weight] : []), ...(bias ? [bias] : [])],
    [y, mean, rstd],
  );
  const inputs = [x, ...(weight ? [weight] : []), ...(bias ? [bias] : [])];
  return record(y, inputs, name, (g) => {
    const needW = !!weight?.requiresGrad;
    const dx = x.requiresGrad ? empty(x.shape) : null;
    const gxhat = needW ? empty(x.shape) : null;
    if (dx || gxhat) {
      run(
        rowNormGradKernel({ layout: l, weight: !!weight, dx: !!dx, gxhat: needW }),
        [x, g, mean, rstd, ...(dx && weight ? [weight] : [])],
        [...(dx ? [dx] : []), ...(gxhat ? [gxhat] : [])],
      );
    }
    const needB = !!bias?.requiresGrad;
    const sums = paramSums([...(gxhat ? [gxhat] : []), ...(needB ? [g] : [])]);
    const grads: (Tensor | null)[] = [dx];
    if (weight) grads.push(gxhat ? view(sums[0], weight.shape) : null);
    if (bias) grads.push(needB ? view(sums[sums.length - 1], bias.shape) : null);
    return grads;
  });
}

/** Normalise over the last dimension; weight and bias have that dimension's size. Rows are
 * contiguous, so the cooperative token kernels run it (kernels/layer_norm_tokens.ts). */
export function layerNorm(x: Tensor, o: LayerNormOptions = {}): Tensor {
  if (x.ndim < 1) throw new Error("layerNorm of a scalar");
  const len = x.shape[x.ndim - 1];
  const rows = x.size / len;
  const { eps = 1e-5 } = o;
  const weight = o.weight ?? null, bias = o.bias ?? null;
  for (const [t, what] of [[weight, "weight"], [bias, "bias"]] as const) {
    if (t && t.size !== len) throw new Error(`layer_norm ${what} ${t.describe()}: needs ${len}`);
  }
  const params = [...(weight ? [weight] : []), ...(bias ? [bias] : [])];
  const y = empty(x.shape);
  const mean = empty([rows]);
  const rstd = empty([rows]);
  const k = tokenNormKernel({ rows, len, eps, weight: !!weight, bias: !!bias });
  run(k, [x, ...params], [y, mean, rstd]);
  // Also the recipe for y (Tensor.evict): the same kernel again on x (which the backward keeps
  // anyway) and the parameters, its statistics written to scratch (the same values as the saved
  // ones; those stay untouched), so y is bit for bit the first write. The rule reads no output
  // (ruleIgnoresOutput): a normalised input that only a projection reads (its weight gradient does)
  // can go after the forward and cost one normalisation pass in the backward.
  const again = (o: Operand) => {
    const m = empty([rows]), r = empty([rows]);
    run(k, [x, ...params], [o, m, r]);
    m.dispose();
    r.dispose();
  };
  return ruleIgnoresOutput(record(
    y,
    [x, ...params],
    "layer_norm",
    (g) => {
      const dw = !!weight?.requiresGrad, db = !!bias?.requiresGrad;
      const spec = {
        rows,
        len,
        weight: !!weight,
        dx: x.requiresGrad,
        dw,
        db,
        iters: tokenNormGradIters(rows, len),
      };
      if (!spec.dx && !dw && !db) return [null, ...params.map(() => null)];
      const groups = tokenNormGradGroups(spec);
      const dx = spec.dx ? empty(x.shape) : null;
      const pw = dw ? empty([groups, len]) : null;
      const pb = db ? empty([groups, len]) : null;
      run(
        tokenNormGradKernel(spec),
        [x, g, mean, rstd, ...(spec.dx && weight ? [weight] : [])],
        [dx, pw, pb].filter((t) => t !== null),
      );
      const grads: (Tensor | null)[] = [dx];
      if (weight) grads.push(pw ? view(sum(pw, 0), weight.shape) : null);
      if (bias) grads.push(pb ? view(sum(pb, 0), bias.shape) : null);
      return grads;
    },
    again,
  ));
}

/** Normalise each pixel's channel vector of [B, C, H, W]; weight and bias are [C]. */
export function layerNorm2d(x: Tensor, o: LayerNormOptions = {}): Tensor {
  if (x.ndim < 2) throw new Error(`layerNorm2d needs [B, C, ...], got ${x.describe()}`);
  const planeSize = prod(x.shape.slice(2));
  const l = { rows: x.shape[0] * planeSize, len: x.shape[1], planeSize };
  // Per-channel sums over batch and pixels: the two-stage plane sums of batch norm.
  const paramSums: ParamSums = (ts) => {
    if (ts.length === 0) return [];
    const inputs = ts.map((_, k) => ({ name: `t${k}`, elementwise: true }));
    return planeSums(
      {
        name: "layer_norm_2d_param_sums",
        layout: planeLayout(x),
        inputs,
        terms: inputs.map((i) => `${i.name}[e]`),
      },
      ts,
      "channel",
    );
  };
  return rowNorm("layer_norm_2d", x, l, paramSums, o);
}
