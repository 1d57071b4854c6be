// Adaptive average pooling with PyTorch's overlapping bins (output sizes that do not divide the
// input, as UPerNet's PPM pools 8×8 to 3×3 and 6×6): float64 reference and finite differences.

import { initDevice } from "../../engine/device.ts";
import { adaptiveAvgPool2d } from "../../engine/ops/pool.ts";
import { scope } from "../../engine/scope.ts";
import { tensor } from "../../engine/tensor.ts";
import { prod } from "../../kernels/common.ts";
import { assertClose, gradCheck, randArray } from "../util.ts";

await initDevice();

/** torch.nn.AdaptiveAvgPool2d: bin i spans [floor(i·n/o), ceil((i+1)·n/o)) on each axis. */
function reference(x: ArrayLike<number>, shape: number[], oh: number, ow: number) {
  const [n, c, h, w] = shape;
  const out = new Float64Array(n * c * oh * ow);
  for (let p = 0; p < n * c; p++) {
    for (let i = 0; i < oh; i++) {
      const y0 = Math.floor((i * h) / oh), y1 = Math.ceil(((i + 1) * h) / oh);
      for (let j = 0; j < ow; j++) {
        const x0 = Math.floor((j * w) / ow), x1 = Math.ceil(((j + 1) * w) / ow);
        let s = 0;
        for (let y = y0; y < y1; y++) for (let k = x0; k < x1; k++) s += x[(p * h + y) * w + k];
        out[(p * oh + i) * ow + j] = s / ((y1 - y0) * (x1 - x0));
      }
    }
  }
  return out;
}

Deno.test("adaptiveAvgPool2d with overlapping bins matches a float64 reference", async () => {
  const cases: [number[], number, number][] = [
    [[2, 3, 8, 8], 3, 3],
    [[2, 3, 8, 8], 6, 6],
    [[1, 5, 7, 11], 3, 4],
    [[3, 2, 16, 16], 6, 3],
  ];
  for (const [shape, oh, ow] of cases) {
    const data = randArray(prod(shape), shape[2] + oh);
    const out = scope(() => adaptiveAvgPool2d(tensor(data, shape), [oh, ow]));
    assertClose(await out.read(), reference(data, shape, oh, ow), {
      atol: 1e-6,
      rtol: 1e-5,
      what: `adaptive avg [${shape}] → ${oh}×${ow}`,
    });
    out.dispose();
  }
});

Deno.test("adaptiveAvgPool2d with overlapping bins: finite differences", async () => {
  const shape = [2, 2, 7, 8];
  await gradCheck(
    (x) => adaptiveAvgPool2d(x, [3, 6]),
    [{ data: randArray(prod(shape), 5), shape }],
    {
      maxPoints: 60,
    },
  );
});
