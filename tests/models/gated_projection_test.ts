// EfficientNet's squeeze-excite gate moved onto the projection's weights
// (models/efficientnet.ts gatedProjection): conv(x · gate) → BN computed as one (W · diag(g_b))
// product per image must equal the plain form, the full-size product x · gate through the
// ConvBnAct, in training (output, and the gradients of x, the gate, the weight and the BN's
// affine) and in eval (the BN folded into the weights and a bias against the two layers).

import { backward, noGrad } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { Conv2d } from "../../engine/nn/conv.ts";
import { ConvBnAct } from "../../engine/nn/conv_bn_act.ts";
import { BatchNorm2d } from "../../engine/nn/norm.ts";
import { mul } from "../../engine/ops/elementwise.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { Random } from "../../engine/random.ts";
import { scope } from "../../engine/scope.ts";
import { parameter, type Tensor, tensor, write } from "../../engine/tensor.ts";
import { gatedProjection } from "../../models/efficientnet.ts";
import { assertClose, randArray } from "../util.ts";

await initDevice();

// 37 → 11 channels (the matmul route's > 1152 weights would need more; both routes are
// products here) at 5×7, and 70 → 24 (1680 weights: the conv op's matmul route) at 9×6.
const CASES: [number, number, number, number, number][] = [
  [3, 37, 11, 5, 7],
  [2, 70, 24, 9, 6],
];

function project(cin: number, cout: number, seed: number): ConvBnAct {
  const p = new ConvBnAct({
    conv: ["0", new Conv2d(cin, cout, { kernel: 1, bias: false }, new Random(seed))],
    bn: ["1", new BatchNorm2d(cout)],
    act: "none",
  });
  const bn = p.bn!;
  write(bn.weight, randArray(cout, seed + 1, 0.5, 1.5));
  write(bn.bias, randArray(cout, seed + 2));
  write(bn.runningMean, randArray(cout, seed + 3));
  write(bn.runningVar, randArray(cout, seed + 4, 0.5, 2));
  return p;
}

Deno.test("gated projection in training: output and the gradients of x, gate, weight, γ and β equal conv(x · gate) → BN", async () => {
  for (const [k, [n, cin, cout, h, w]] of CASES.entries()) {
    const xv = randArray(n * cin * h * w, 10 + k), gv = randArray(n * cin, 20 + k, 0, 1);
    const rv = randArray(n * cout * h * w, 30 + k);
    const run = async (gated: boolean) => {
      const p = project(cin, cout, 40 + k).train();
      const x = parameter(xv, [n, cin, h, w], "x"), g = parameter(gv, [n, cin, 1, 1], "gate");
      const y = scope(() => {
        const y = gated ? gatedProjection(p, x, g) : p.forward(mul(x, g));
        backward(sum(mul(y, tensor(rv, y.shape))));
        return y;
      });
      const grads: Tensor[] = [
        x.grad!,
        g.grad!,
        p.conv.weight.grad!,
        p.bn!.weight.grad!,
        p.bn!.bias.grad!,
      ];
      const out: Float32Array[] = [];
      for (const t of [y, ...grads]) out.push((await t.read()) as Float32Array);
      for (const t of [y, x, g]) t.dispose();
      p.dispose();
      return out;
    };
    const [plain, gated] = [await run(false), await run(true)];
    const names = ["y", "dx", "dgate", "dW", "dγ", "dβ"];
    for (const [i, want] of plain.entries()) {
      const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      assertClose(gated[i], want, {
        what: `${n}×${cin}→${cout} ${names[i]}`,
        atol: 1e-5 * scale + 1e-6,
        rtol: 1e-4,
      });
    }
  }
});

Deno.test("gated projection in eval: the BN folded into the per-image weights equals conv(x · gate) → BN", async () => {
  for (const [k, [n, cin, cout, h, w]] of CASES.entries()) {
    const p = project(cin, cout, 50 + k).eval();
    const x = tensor(randArray(n * cin * h * w, 60 + k), [n, cin, h, w]);
    const g = tensor(randArray(n * cin, 70 + k, 0, 1), [n, cin, 1, 1]);
    p.foldInEval = false;
    const want = await scope(() => noGrad(() => p.forward(mul(x, g)))).read();
    p.foldInEval = true;
    const got = await scope(() => noGrad(() => gatedProjection(p, x, g))).read();
    assertClose(got, want, { what: `${n}×${cin}→${cout} eval`, atol: 1e-5, rtol: 1e-4 });
    p.dispose();
  }
});
