import { initDevice } from "../../engine/device.ts";
import { dropout, dropout2d, dropPath, reluDropout2d } from "../../engine/ops/dropout.ts";
import { scope } from "../../engine/scope.ts";
import { type Tensor, tensor } from "../../engine/tensor.ts";
import { assertClose, gradCheck, randArray } from "../util.ts";

await initDevice();

// The generator of kernels/dropout.ts, in TypeScript, to predict masks exactly.
function mix32(v: number): number {
  let h = v >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x21f0aaad) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, 0x735a2d97) >>> 0;
  h ^= h >>> 15;
  return h >>> 0;
}
function keeps(seed: number, unit: number, p: number): boolean {
  const s = seed >>> 0;
  const h = mix32((mix32((unit + mix32(s)) >>> 0) ^ mix32((s ^ 0x9e3779b9) >>> 0)) >>> 0);
  return h >= Math.min(0xffffffff, Math.round(p * 2 ** 32));
}

async function apply(fn: (x: Tensor) => Tensor, data: Float32Array, shape: number[]) {
  const y = scope(() => fn(tensor(data, shape)));
  const v = (await y.read()) as Float32Array;
  y.dispose();
  return v;
}

const SHAPE = [3, 5, 7, 9];
const N = 3 * 5 * 7 * 9;

Deno.test("dropout: exact mask of the hash, scale 1/(1-p), drop rate near p", async () => {
  const n = 20001;
  const x = randArray(n, 1, 0.5, 1.5);
  for (const [p, seed] of [[0.3, 12345], [0.5, -7], [0.9, 2 ** 33 + 5]]) {
    const y = await apply((t) => dropout(t, p, { training: true, seed }), x, [n]);
    const expected = Array.from(x, (v, i) => (keeps(seed, i, p) ? v / (1 - p) : 0));
    assertClose(y, expected, { what: `dropout p=${p}` });
    const dropped = y.filter((v) => v === 0).length / n;
    const sigma = Math.sqrt((p * (1 - p)) / n);
    if (Math.abs(dropped - p) > 5 * sigma) throw new Error(`p=${p}: dropped ${dropped}`);
  }
});

Deno.test("dropout: same seed same mask, different seeds independent masks", async () => {
  const n = 20001, p = 0.5;
  const x = randArray(n, 2, 0.5, 1.5);
  const run = (seed: number) => apply((t) => dropout(t, p, { training: true, seed }), x, [n]);
  const a = await run(1), b = await run(1), c = await run(2);
  assertClose(a, b, { atol: 0, rtol: 0, what: "same seed" });
  // independent masks agree on p² + (1-p)² of the elements
  const agree = a.filter((v, i) => (v === 0) === (c[i] === 0)).length / n;
  if (Math.abs(agree - 0.5) > 0.02) throw new Error(`seeds 1 and 2 agree on ${agree}`);
});

Deno.test("dropout2d drops whole channels", async () => {
  const p = 0.4, seed = 99;
  const x = randArray(N, 3, 0.5, 1.5);
  const y = await apply((t) => dropout2d(t, p, { training: true, seed }), x, SHAPE);
  const expected = Array.from(x, (v, i) => (keeps(seed, Math.floor(i / 63), p) ? v / (1 - p) : 0));
  assertClose(y, expected);
  // many channels: the rate of dropped channels is near p
  const shape = [4, 301, 1, 3];
  const big = randArray(4 * 301 * 3, 4, 0.5, 1.5);
  const yb = await apply((t) => dropout2d(t, p, { training: true, seed: 5 }), big, shape);
  let dropped = 0;
  for (let plane = 0; plane < 4 * 301; plane++) {
    const vals = yb.slice(plane * 3, plane * 3 + 3);
    const zeros = vals.filter((v) => v === 0).length;
    if (zeros !== 0 && zeros !== 3) throw new Error(`plane ${plane} partly dropped`);
    if (zeros === 3) dropped++;
  }
  const rate = dropped / 1204;
  if (Math.abs(rate - p) > 5 * Math.sqrt((p * (1 - p)) / 1204)) throw new Error(`rate ${rate}`);
});

Deno.test("dropout2d and reluDropout2d on planes of a multiple of 4 (vec4 kernel): same masks", async () => {
  const p = 0.4, seed = 77, shape = [3, 5, 4, 6], plane = 24;
  const n = 3 * 5 * plane;
  const x = randArray(n, 11, 0.2, 1).map((v, i) => (i % 3 === 0 ? -v : v));
  const y = await apply((t) => dropout2d(t, p, { training: true, seed }), x, shape);
  assertClose(
    y,
    Array.from(x, (v, i) => (keeps(seed, Math.floor(i / plane), p) ? v / (1 - p) : 0)),
  );
  const yr = await apply((t) => reluDropout2d(t, p, { training: true, seed }), x, shape);
  assertClose(
    yr,
    Array.from(
      x,
      (v, i) => (keeps(seed, Math.floor(i / plane), p) ? Math.max(v, 0) / (1 - p) : 0),
    ),
  );
  await gradCheck((t) => reluDropout2d(t, p, { training: true, seed }), [{ data: x, shape }]);
});

Deno.test("dropout backward reuses the mask (gradient check)", async () => {
  const x = randArray(N, 5);
  await gradCheck((t) => dropout(t, 0.3, { training: true, seed: 17 }), [{
    data: x,
    shape: SHAPE,
  }]);
  await gradCheck((t) => dropout2d(t, 0.5, { training: true, seed: 18 }), [
    { data: x, shape: SHAPE },
  ]);
});

Deno.test("reluDropout2d is dropout2d(relu(x)) with the same mask, forward and gradient", async () => {
  const p = 0.4, seed = 31;
  // values away from 0 so the finite differences never straddle the ReLU kink
  const x = randArray(N, 8, 0.2, 1).map((v, i) => (i % 3 === 0 ? -v : v));
  const y = await apply((t) => reluDropout2d(t, p, { training: true, seed }), x, SHAPE);
  const expected = Array.from(
    x,
    (v, i) => (keeps(seed, Math.floor(i / 63), p) ? Math.max(v, 0) / (1 - p) : 0),
  );
  assertClose(y, expected);
  await gradCheck((t) => reluDropout2d(t, p, { training: true, seed }), [{
    data: x,
    shape: SHAPE,
  }]);
  const evalY = await apply((t) => reluDropout2d(t, p, { training: false, seed }), x, SHAPE);
  assertClose(evalY, x.map((v) => Math.max(v, 0)));
});

Deno.test("dropPath drops whole samples (stochastic depth), gradient by the same mask", async () => {
  const p = 0.5, seed = 12, per = N / 3;
  const x = randArray(N, 9, 0.5, 1.5);
  const y = await apply((t) => dropPath(t, p, { training: true, seed }), x, SHAPE);
  const expected = Array.from(x, (v, i) => (keeps(seed, Math.floor(i / per), p) ? v / (1 - p) : 0));
  assertClose(y, expected);
  await gradCheck((t) => dropPath(t, p, { training: true, seed }), [{ data: x, shape: SHAPE }]);
  assertClose(await apply((t) => dropPath(t, p, { training: false, seed }), x, SHAPE), x);
});

Deno.test("dropout in eval, p = 0 and p = 1", async () => {
  const x = randArray(N, 6);
  assertClose(await apply((t) => dropout(t, 0.5, { training: false, seed: 1 }), x, SHAPE), x);
  assertClose(await apply((t) => dropout2d(t, 0, { training: true, seed: 1 }), x, SHAPE), x);
  assertClose(
    await apply((t) => dropout(t, 1, { training: true, seed: 1 }), x, SHAPE),
    new Float32Array(N),
  );
  await gradCheck((t) => dropout(t, 0.5, { training: false, seed: 1 }), [
    { data: x, shape: SHAPE },
  ]);
});

Deno.test("more dropouts in one submit than seed slots keep their own seeds", async () => {
  const n = 257, p = 0.5;
  const x = randArray(n, 7, 0.5, 1.5);
  const xt = tensor(x, [n]);
  const outs = scope(() =>
    Array.from({ length: 150 }, (_, s) => dropout(xt, p, { training: true, seed: s }))
  );
  for (let s = 0; s < outs.length; s++) {
    const expected = Array.from(x, (v, i) => (keeps(s, i, p) ? v / (1 - p) : 0));
    assertClose(await outs[s].read(), expected, { what: `seed ${s}` });
    outs[s].dispose();
  }
  xt.dispose();
});
