// A recipe (Storage.recompute, Tensor.evict) for an op whose launches make their own output
// tensor rather than write a given range: the convolutions, whose routes allocate, chunk and
// split as they go. The launches run again into a fresh tensor, which is copied into the range
// asked for: the op's cost once more, plus one copy. It exists so that such an output can be
// evicted where no backward rule reads it (FC-Siam's up-convolution outputs, which only the
// concatenation reads, in the forward): there it is never written again and costs nothing; a
// rule that does read it still gets the op's exact values back, bit for bit.

import { mapKernel } from "../kernels/elementwise.ts";
import { run } from "./launch.ts";
import type { Recompute, Tensor } from "./tensor.ts";

/** The recipe that writes `again()`'s result (the op's forward launches, no autograd, on
 * inputs that outlive the output's backward readers) into the range asked for. */
export function recomputeByCopy(again: () => Tensor): Recompute {
  return (out) => {
    const t = again();
    const shape = [t.size];
    const k = mapKernel({
      name: "recompute_copy",
      expr: "a",
      inputs: [{ shape }],
      outShape: shape,
    });
    run(k, [t], [out]);
    t.dispose();
  };
}
