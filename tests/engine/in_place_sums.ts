// The runs behind the tests of rules that add their input gradient into the gradient so far
// (autograd's `into`): an op's output and 3·x both reach the loss, in either order, with
// BackwardOptions.accumulateInPlace on and off, counting grad_add launches. Each test says what
// the gradients must be and that some order sums in place.

import { backward } from "../../engine/autograd.ts";
import { add, mul, mulScalar } from "../../engine/ops/elementwise.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { setDispatchTap } from "../../engine/recorder.ts";
import { scope } from "../../engine/scope.ts";
import { type Tensor, tensor } from "../../engine/tensor.ts";

export interface InPlaceRun {
  /** grad_add launches in the run's step. */
  adds: number;
  /** Each parameter's gradient (zeros where it got none), x first. */
  grads: ArrayLike<number>[];
}

/** Four runs, in the order (op first, in place), (op first, apart), (op last, in place), (op
 * last, apart), each on fresh parameters from `params()` (x first): the loss is
 * Σ op(params)·weights(op's output size) + Σ 3x·r2. */
export async function inPlaceRuns(
  params: () => Tensor[],
  op: (p: Tensor[]) => Tensor,
  weights: (n: number) => Float32Array,
  r2: Float32Array,
): Promise<InPlaceRun[]> {
  const runs: InPlaceRun[] = [];
  for (const opFirst of [true, false]) {
    for (const accumulateInPlace of [true, false]) {
      const p = params(), x = p[0];
      let adds = 0;
      const prev = setDispatchTap((l) => void (l === "grad_add" && adds++));
      try {
        scope(() => {
          const o = op(p);
          const a = sum(mul(o, tensor(weights(o.size), o.shape)));
          const b = sum(mul(mulScalar(x, 3), tensor(r2, x.shape)));
          backward(opFirst ? add(a, b) : add(b, a), undefined, { accumulateInPlace });
        });
      } finally {
        setDispatchTap(prev);
      }
      const grads = await Promise.all(
        p.map((t) => t.grad ? t.grad.read() : Promise.resolve(new Float32Array(t.size))),
      );
      for (const t of p) t.dispose();
      runs.push({ adds, grads });
    }
  }
  return runs;
}
