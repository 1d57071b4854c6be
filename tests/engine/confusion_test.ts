import { initDevice } from "../../engine/device.ts";
import { confusion } from "../../engine/ops/confusion.ts";
import { scope } from "../../engine/scope.ts";
import { tensor } from "../../engine/tensor.ts";
import { randArray, rng } from "../util.ts";

await initDevice();

/** CPU counts: [TP, FP, TN, FN] per image. */
function reference(
  z: ArrayLike<number>,
  y: ArrayLike<number>,
  b: number,
  c: number,
  hw: number,
  threshold = 0.5,
): number[] {
  const out: number[] = [];
  for (let i = 0; i < b; i++) {
    const n = [0, 0, 0, 0];
    for (let p = 0; p < hw; p++) {
      const label = y[i * hw + p];
      if (label !== 0 && label !== 1) continue;
      const pred = c === 1
        ? 1 / (1 + Math.exp(-z[i * hw + p])) > threshold
        : z[(i * 2 + 1) * hw + p] > z[i * 2 * hw + p];
      n[pred ? (label ? 0 : 1) : (label ? 3 : 2)]++;
    }
    out.push(...n);
  }
  return out;
}

function labels(n: number, seed: number, changed: number, ignored: number): Uint32Array {
  const r = rng(seed);
  return Uint32Array.from({ length: n }, () => (r() < ignored ? 255 : r() < changed ? 1 : 0));
}

async function check(
  z: Float32Array,
  y: Uint32Array,
  shape: [number, number, number, number],
  threshold?: number,
): Promise<number[]> {
  const [b, c, h, w] = shape;
  const out = scope(() =>
    confusion(tensor(z, shape), tensor(y, [b, h, w], "u32"), threshold ? { threshold } : {})
  );
  const got = Array.from(await out.read());
  out.dispose();
  const want = reference(z, y, b, c, h * w, threshold);
  if (got.join() !== want.join()) throw new Error(`counts ${got} != reference ${want}`);
  return got;
}

const SHAPES: [number, number, number, number][] = [
  [3, 1, 5, 7],
  [3, 2, 7, 5],
  // Several 4096-pixel chunks per image, the last one partial.
  [2, 1, 67, 131],
  [2, 2, 131, 67],
  // H·W a multiple of 4 (vec4 lanes), in one chunk and across three.
  [3, 1, 6, 10],
  [2, 2, 68, 132],
];

for (const shape of SHAPES) {
  Deno.test(`confusion [${shape}] matches CPU counts on random masks`, async () => {
    const [b, c, h, w] = shape;
    const z = randArray(b * c * h * w, h + c, -3, 3);
    await check(z, labels(b * h * w, w, 0.3, 0.1), shape);
  });
}

Deno.test("confusion with a threshold other than 0.5", async () => {
  const z = randArray(3 * 35, 4, -3, 3);
  await check(z, labels(3 * 35, 5, 0.5, 0.1), [3, 1, 5, 7], 0.8);
  await check(z, labels(3 * 35, 6, 0.5, 0.1), [3, 1, 5, 7], 0.1);
});

for (const [h, w] of [[9, 11], [9, 12]]) {
  Deno.test(`confusion edge cases ${h}×${w}: all unchanged, all changed, all ignored, empty prediction`, async () => {
    const shape: [number, number, number, number] = [2, 1, h, w];
    const hw = h * w, n = 2 * hw;
    const zeros = new Uint32Array(n), ones = new Uint32Array(n).fill(1);
    const ignored = new Uint32Array(n).fill(255);
    const negative = new Float32Array(n).fill(-2);
    const positive = new Float32Array(n).fill(2);
    const mixed = randArray(n, 9, -3, 3);
    const eq = (a: number[], b: number[]) => {
      if (a.join() !== b.join()) throw new Error(`${a} != ${b}`);
    };
    // Nothing changed, nothing predicted: every valid pixel is a true negative.
    eq(await check(negative, zeros, shape), [0, 0, hw, 0, 0, 0, hw, 0]);
    // Everything changed and predicted.
    eq(await check(positive, ones, shape), [hw, 0, 0, 0, hw, 0, 0, 0]);
    // Every pixel ignored: all counts zero whatever the prediction.
    eq(await check(mixed, ignored, shape), [0, 0, 0, 0, 0, 0, 0, 0]);
    // Empty prediction over real change: only TN and FN.
    const y = labels(n, 10, 0.5, 0);
    const got = await check(negative, y, shape);
    if (got[0] + got[1] + got[4] + got[5] !== 0) throw new Error(`predicted positives in ${got}`);
    // 2-channel ties predict "unchanged" (argmax takes the first).
    eq(await check(new Float32Array(2 * n), ones, [2, 2, h, w]), [0, 0, 0, hw, 0, 0, 0, hw]);
  });
}
