import { initDevice } from "../../engine/device.ts";
import { erf, gelu, hardSigmoid, leakyRelu, prelu, silu } from "../../engine/ops/activation.ts";
import { scope } from "../../engine/scope.ts";
import { type Tensor, tensor } from "../../engine/tensor.ts";
import { assertClose, gradCheck, randArray } from "../util.ts";

await initDevice();

/** float64 erf: a positive-term series below 3, a continued fraction for erfc above. */
function erf64(x: number): number {
  const z = Math.abs(x);
  let r: number;
  if (z < 3) {
    // erf(z) = 2/√π·e^{−z²}·Σ 2ⁿ z^{2n+1} / (1·3·…·(2n+1))
    let term = z, s = z;
    for (let n = 1; term > 1e-17 * s; n++) {
      term *= (2 * z * z) / (2 * n + 1);
      s += term;
    }
    r = (2 / Math.sqrt(Math.PI)) * Math.exp(-z * z) * s;
  } else {
    // erfc(z) = e^{−z²}/√π · 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + …))))
    let k = z;
    for (let n = 80; n >= 1; n--) k = z + n / 2 / k;
    r = 1 - Math.exp(-z * z) / (Math.sqrt(Math.PI) * k);
  }
  return Math.sign(x) * r;
}

async function apply(fn: (x: Tensor) => Tensor, data: Float32Array, shape: number[]) {
  const y = scope(() => fn(tensor(data, shape)));
  const v = await y.read();
  y.dispose();
  return v;
}

Deno.test("erf is within 1e-6 of float64 erf over [-7, 7]", async () => {
  const xs = Float32Array.from({ length: 2801 }, (_, i) => -7 + i * 0.005);
  const got = await apply(erf, xs, [xs.length]);
  assertClose(got, Array.from(xs, erf64), { atol: 1e-6, rtol: 0, what: "erf" });
  await gradCheck(erf, [{ data: randArray(25, 1, -2.5, 2.5), shape: [5, 5] }]);
});

const SHAPE = [2, 3, 7, 9];
const N = 2 * 3 * 7 * 9;

/** Keep finite differences away from a kink at k (|x − k| ≥ 0.05). */
function awayFrom(data: Float32Array, ...kinks: number[]): Float32Array {
  return data.map((v) => {
    for (const k of kinks) if (Math.abs(v - k) < 0.05) return v + 0.1;
    return v;
  });
}

const cases = [
  ["silu", silu, (x: number) => x / (1 + Math.exp(-x)), [] as number[]],
  ["gelu", gelu, (x: number) => 0.5 * x * (1 + erf64(x / Math.SQRT2)), []],
  ["leakyRelu", (x: Tensor) => leakyRelu(x), (x: number) => (x > 0 ? x : 0.01 * x), [0]],
  ["leakyRelu 0.2", (x: Tensor) => leakyRelu(x, 0.2), (x: number) => (x > 0 ? x : 0.2 * x), [0]],
  ["hardSigmoid", hardSigmoid, (x: number) => Math.min(1, Math.max(0, x / 6 + 0.5)), [-3, 3]],
] as const;

for (const [name, op, ref, kinks] of cases) {
  Deno.test(`${name}: forward against float64 and gradient`, async () => {
    const data = awayFrom(randArray(N, 7, -5, 5), ...kinks);
    assertClose(await apply(op, data, SHAPE), Array.from(data, ref), { what: name });
    // gradCheck samples ~24 points: a smaller odd shape spread over the same range
    await gradCheck(op, [{ data: awayFrom(randArray(35, 8, -5, 5), ...kinks), shape: [5, 7] }]);
  });
}

function preluRef(x: Float32Array, slope: Float32Array, c: number, hw: number): Float64Array {
  return Float64Array.from(x, (v, i) => {
    const a = slope.length === 1 ? slope[0] : slope[Math.floor(i / hw) % c];
    return v > 0 ? v : a * v;
  });
}

Deno.test("prelu with a shared slope and a per-channel slope: forward and gradients", async () => {
  const x = awayFrom(randArray(N, 20, -2, 2), 0);
  for (const slope of [Float32Array.of(0.25), randArray(3, 21, -0.5, 0.5)]) {
    const s = tensor(slope, [slope.length]);
    assertClose(await apply((t) => prelu(t, s), x, SHAPE), preluRef(x, slope, 3, 63));
    s.dispose();
    await gradCheck((t, a) => prelu(t, a), [
      { data: x, shape: SHAPE },
      { data: slope, shape: [slope.length] },
    ]);
  }
});

Deno.test("prelu on [B, C] (no spatial dimensions)", async () => {
  const x = awayFrom(randArray(15, 22, -2, 2), 0);
  const slope = randArray(3, 23, 0, 0.5);
  const s = tensor(slope, [3]);
  assertClose(await apply((t) => prelu(t, s), x, [5, 3]), preluRef(x, slope, 3, 1));
  s.dispose();
  await gradCheck((t, a) => prelu(t, a), [
    { data: x, shape: [5, 3] },
    { data: slope, shape: [3] },
  ]);
});

Deno.test("prelu slope gradient on the vec4 path (H·W a multiple of 4)", async () => {
  const shape = [2, 3, 4, 5];
  const x = awayFrom(randArray(120, 24, -2, 2), 0);
  await gradCheck((t, a) => prelu(t, a), [
    { data: x, shape },
    { data: randArray(3, 25, 0, 0.5), shape: [3] },
  ]);
  await gradCheck((t, a) => prelu(t, a), [{ data: x, shape }, {
    data: Float32Array.of(0.1),
    shape: [1],
  }]);
});
