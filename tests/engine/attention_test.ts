import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { backward } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { attention, type AttentionOptions } from "../../engine/ops/attention.ts";
import { mul } from "../../engine/ops/elementwise.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { pool } from "../../engine/pool.ts";
import { scope } from "../../engine/scope.ts";
import { parameter, tensor } from "../../engine/tensor.ts";
import { assertClose, gradCheck, randArray } from "../util.ts";
import { keyValuePlan } from "../../kernels/attention.ts";
import { gemmChunks, planAttention } from "../../kernels/attention_plan.ts";

await initDevice();

interface Dims {
  b: number;
  h: number;
  lq: number;
  lk: number;
  d: number;
  dv: number;
}

/** float64 attention of rows [r0, r1) of every head: [B, H, r1 - r0, Dv] flattened. */
function reference(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  { b, h, lq, lk, d, dv }: Dims,
  scale: number,
  r0 = 0,
  r1 = lq,
): Float64Array {
  const out = new Float64Array(b * h * (r1 - r0) * dv);
  const s = new Float64Array(lk);
  let o = 0;
  for (let bh = 0; bh < b * h; bh++) {
    for (let i = r0; i < r1; i++) {
      let m = -Infinity;
      for (let j = 0; j < lk; j++) {
        let dot = 0;
        for (let c = 0; c < d; c++) dot += q[(bh * lq + i) * d + c] * k[(bh * lk + j) * d + c];
        s[j] = dot * scale;
        m = Math.max(m, s[j]);
      }
      let z = 0;
      for (let j = 0; j < lk; j++) z += s[j] = Math.exp(s[j] - m);
      for (let c = 0; c < dv; c++) {
        let acc = 0;
        for (let j = 0; j < lk; j++) acc += s[j] * v[(bh * lk + j) * dv + c];
        out[o++] = acc / z;
      }
    }
  }
  return out;
}

function inputs(dm: Dims, seed: number, range = 1.5) {
  return {
    q: randArray(dm.b * dm.h * dm.lq * dm.d, seed, -range, range),
    k: randArray(dm.b * dm.h * dm.lk * dm.d, seed + 1, -range, range),
    v: randArray(dm.b * dm.h * dm.lk * dm.dv, seed + 2),
  };
}

// Odd lengths, head sizes that are and are not multiples of 4, Lq ≠ Lk both ways, query
// counts across a 64-row workgroup, keys across a tile.
const CASES: Dims[] = [
  { b: 2, h: 3, lq: 7, lk: 5, d: 5, dv: 3 },
  { b: 1, h: 2, lq: 67, lk: 71, d: 8, dv: 12 },
  { b: 2, h: 1, lq: 129, lk: 3, d: 16, dv: 16 },
  { b: 1, h: 3, lq: 5, lk: 133, d: 7, dv: 9 },
  { b: 1, h: 1, lq: 9, lk: 11, d: 64, dv: 64 },
];

for (const dm of CASES) {
  Deno.test(`attention forward ${JSON.stringify(dm)} matches a float64 reference`, async () => {
    const { q, k, v } = inputs(dm, 10 + dm.lq);
    const shape = (l: number, w: number) => [dm.b, dm.h, l, w];
    const scale = dm.lk === 5 ? 0.7 : 1 / Math.sqrt(dm.d);
    const out = scope(() =>
      attention(
        tensor(q, shape(dm.lq, dm.d)),
        tensor(k, shape(dm.lk, dm.d)),
        tensor(v, shape(dm.lk, dm.dv)),
        dm.lk === 5 ? { scale } : {},
      )
    );
    assertClose(await out.read(), reference(q, k, v, dm, scale), { what: "attention" });
    out.dispose();
  });
}

// Backward: a single query tile (no query split), and a query range split in 3 slices with two
// key blocks.
const GRAD_CASES: Dims[] = [
  { b: 1, h: 2, lq: 7, lk: 5, d: 5, dv: 3 },
  { b: 1, h: 1, lq: 131, lk: 67, d: 4, dv: 6 },
];

for (const dm of GRAD_CASES) {
  Deno.test(`attention gradient ${JSON.stringify(dm)} matches finite differences`, async () => {
    const { q, k, v } = inputs(dm, 20 + dm.lq);
    await gradCheck((qq, kk, vv) => attention(qq, kk, vv), [
      { data: q, shape: [dm.b, dm.h, dm.lq, dm.d] },
      { data: k, shape: [dm.b, dm.h, dm.lk, dm.d] },
      { data: v, shape: [dm.b, dm.h, dm.lk, dm.dv] },
    ], { maxPoints: 12 });
  });
}

Deno.test("attention gradient of k and v alone (q without grad)", async () => {
  const dm = { b: 1, h: 1, lq: 6, lk: 5, d: 3, dv: 2 };
  const { q, k, v } = inputs(dm, 40);
  const qt = tensor(q, [1, 1, dm.lq, dm.d]).keep();
  await gradCheck((kk, vv) => attention(qt, kk, vv), [
    { data: k, shape: [1, 1, dm.lk, dm.d] },
    { data: v, shape: [1, 1, dm.lk, dm.dv] },
  ], { maxPoints: 10 });
  qt.dispose();
});

Deno.test("flash attention over 4096 queries × 4096 keys never holds an Lq×Lk buffer", async () => {
  const dm = { b: 1, h: 1, lq: 4096, lk: 4096, d: 8, dv: 8 };
  const { q, k, v } = inputs(dm, 50, 3);
  const qp = parameter(q, [1, 1, dm.lq, dm.d]);
  const kp = parameter(k, [1, 1, dm.lk, dm.d]);
  const vp = parameter(v, [1, 1, dm.lk, dm.dv]);
  const base = pool.liveBytes;
  pool.peakLiveBytes = base;
  const head = scope(() => {
    const o = attention(qp, kp, vp, { route: "flash" });
    backward(sum(o));
    return o;
  });
  const got = await head.read();
  const extra = pool.peakLiveBytes - base;
  const matrix = dm.lq * dm.lk * 4;
  console.log(`peak extra ${extra} bytes; an Lq×Lk matrix is ${matrix}`);
  if (extra > matrix / 8) {
    throw new Error(`attention held ${extra} bytes at peak (an Lq×Lk matrix is ${matrix})`);
  }
  // Spot-check the first and last query rows against the reference.
  const rows = [0, 1, 4094, 4095];
  for (const r of rows) {
    const want = reference(q, k, v, dm, 1 / Math.sqrt(dm.d), r, r + 1);
    assertClose(got.slice(r * dm.dv, (r + 1) * dm.dv), want, { what: `row ${r}` });
  }
  for (const p of [qp, kp, vp]) {
    const g = await p.grad!.read();
    if (!g.every(Number.isFinite)) throw new Error("non-finite gradient");
  }
  // Every output row gets the same gradient 1, so Σ dV over keys is Lq per column.
  const gv = await vp.grad!.read();
  let total = 0;
  for (let j = 0; j < dm.lk; j++) total += gv[j * dm.dv];
  assertClose([total], [dm.lq], { rtol: 1e-4, what: "Σ dV" });
  head.dispose();
  for (const p of [qp, kp, vp]) p.dispose();
});

/** float64 gradients of Σ out·r with respect to q, k and v. */
function referenceGrads(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  r: Float32Array,
  { b, h, lq, lk, d, dv }: Dims,
  scale: number,
) {
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length);
  const dvv = new Float64Array(v.length);
  const p = new Float64Array(lk), dp = new Float64Array(lk);
  for (let bh = 0; bh < b * h; bh++) {
    for (let i = 0; i < lq; i++) {
      const qi = (bh * lq + i) * d, ri = (bh * lq + i) * dv;
      let m = -Infinity;
      for (let j = 0; j < lk; j++) {
        let dot = 0;
        for (let c = 0; c < d; c++) dot += q[qi + c] * k[(bh * lk + j) * d + c];
        p[j] = dot * scale;
        m = Math.max(m, p[j]);
      }
      let z = 0;
      for (let j = 0; j < lk; j++) z += p[j] = Math.exp(p[j] - m);
      let rowDot = 0;
      for (let j = 0; j < lk; j++) {
        p[j] /= z;
        let t = 0;
        for (let c = 0; c < dv; c++) {
          t += r[ri + c] * v[(bh * lk + j) * dv + c];
          dvv[(bh * lk + j) * dv + c] += p[j] * r[ri + c];
        }
        dp[j] = t;
        rowDot += p[j] * t;
      }
      for (let j = 0; j < lk; j++) {
        const ds = p[j] * (dp[j] - rowDot) * scale;
        for (let c = 0; c < d; c++) {
          dq[qi + c] += ds * k[(bh * lk + j) * d + c];
          dk[(bh * lk + j) * d + c] += ds * q[qi + c];
        }
      }
    }
  }
  return { dq, dk, dv: dvv };
}

/** Gradients of Σ attention(q, k, v)·r against float64 (the dK/dV kernels' forms). */
async function gradsMatchFloat64(
  dm: Dims,
  seed: number,
  opts: AttentionOptions = {},
): Promise<void> {
  const { q, k, v } = inputs(dm, seed);
  const r = randArray(dm.b * dm.h * dm.lq * dm.dv, seed + 10);
  const shape = (l: number, w: number) => [dm.b, dm.h, l, w];
  const qp = parameter(q, shape(dm.lq, dm.d)), kp = parameter(k, shape(dm.lk, dm.d));
  const vp = parameter(v, shape(dm.lk, dm.dv));
  scope(() => backward(sum(mul(attention(qp, kp, vp, opts), tensor(r, shape(dm.lq, dm.dv))))));
  const ref = referenceGrads(q, k, v, r, dm, 1 / Math.sqrt(dm.d));
  assertClose(await qp.grad!.read(), ref.dq, { what: "dq", atol: 1e-4 });
  assertClose(await kp.grad!.read(), ref.dk, { what: "dk", atol: 2e-4, rtol: 1e-4 });
  assertClose(await vp.grad!.read(), ref.dv, { what: "dv", atol: 2e-4, rtol: 1e-4 });
  for (const t of [qp, kp, vp]) t.dispose();
}

// Short key sets run the dK/dV kernel with lanes (several threads per key, summed at the end):
// BIT's 4 tokens, an odd 3 with head sizes off vec4, and 16; query ranges over several tiles
// and split slices.
for (
  const dm of [
    { b: 2, h: 3, lq: 300, lk: 4, d: 8, dv: 8 },
    { b: 1, h: 2, lq: 517, lk: 3, d: 5, dv: 6 },
    { b: 1, h: 1, lq: 200, lk: 16, d: 8, dv: 4 },
  ]
) {
  Deno.test(
    `attention gradients with few keys ${JSON.stringify(dm)} match float64`,
    () => gradsMatchFloat64(dm, 50 + dm.lk),
  );
}

// The dK/dV backward in two passes (dK, then dV in column chunks): CGNet's 32-wide keys with
// 128-wide values choose it themselves; forced elsewhere: head sizes off vec4, 19 chunks of one
// vec4 (76 value columns beside 120-wide keys), lanes (3 keys), split query slices.
for (
  const [dm, passes] of [
    [{ b: 1, h: 2, lq: 70, lk: 45, d: 32, dv: 128 }, undefined],
    [{ b: 2, h: 1, lq: 37, lk: 29, d: 7, dv: 10 }, 2],
    [{ b: 1, h: 1, lq: 21, lk: 33, d: 120, dv: 76 }, 2],
    [{ b: 1, h: 2, lq: 517, lk: 3, d: 5, dv: 6 }, 2],
  ] as [Dims, 2 | undefined][]
) {
  Deno.test(`attention gradients in two dK/dV passes ${JSON.stringify(dm)} match float64`, () => {
    const spec = { bh: dm.b * dm.h, lq: dm.lq, lk: dm.lk, d: dm.d, dv: dm.dv, scale: 1 };
    assertEquals(keyValuePlan({ ...spec, kvPasses: passes }).passes, 2);
    return gradsMatchFloat64(dm, 80 + dm.d, { kvPasses: passes });
  });
}

Deno.test("the dK/dV backward takes two passes only where one thread's rows overflow", () => {
  const plan = (lq: number, lk: number, d: number, dv: number) =>
    keyValuePlan({ bh: 8, lq, lk, d, dv, scale: 1 });
  const cgnet = plan(16384, 16384, 32, 128);
  assertEquals([cgnet.passes, cgnet.chunk, cgnet.chunks], [2, 32, 1]);
  assertEquals(plan(16384, 256, 32, 32).passes, 1); // MiT-b0 stage 1
  assertEquals(plan(16384, 4, 8, 8).passes, 1); // BIT's decoder
  assertEquals(plan(8, 8, 64, 64).passes, 1); // BIT's encoder
  assertEquals(plan(64, 64, 128, 128).passes, 1); // HANet: two passes would not relieve it
});

// The GEMM form (engine/ops/attention_gemm.ts): one chunk with odd sizes and values wider than
// the flash kernels take; chunks of 2 heads (and a last one of 1); one head's queries in 64-row
// slices whose dK and dV partial sums are added, with several heads and with a last short
// slice. Chunk sizes are forced small; their offsets stay 256-byte aligned.
const GEMM_CASES: [Dims, number | undefined][] = [
  [{ b: 1, h: 2, lq: 7, lk: 5, d: 5, dv: 3 }, undefined],
  [{ b: 1, h: 1, lq: 9, lk: 11, d: 6, dv: 130 }, undefined],
  [{ b: 3, h: 1, lq: 64, lk: 80, d: 4, dv: 8 }, 2 * 64 * 80 * 4],
  [{ b: 1, h: 2, lq: 128, lk: 40, d: 16, dv: 8 }, 64 * 40 * 4],
  [{ b: 1, h: 1, lq: 150, lk: 33, d: 16, dv: 8 }, 64 * 33 * 4],
];

for (const [dm, chunkBytes] of GEMM_CASES) {
  const spec = { bh: dm.b * dm.h, lq: dm.lq, lk: dm.lk, d: dm.d, dv: dm.dv, scale: 0.6 };
  const limits = { align: 256, maxBinding: 2 ** 27 };
  const tag = `${JSON.stringify(dm)}, ${JSON.stringify(gemmChunks(spec, limits, chunkBytes))}`;
  Deno.test(`GEMM attention ${tag} matches float64 forward and gradients`, async () => {
    const { q, k, v } = inputs(dm, 90 + dm.lq);
    const opts: AttentionOptions = { route: "gemm", chunkBytes, scale: 0.6 };
    const shape = (l: number, w: number) => [dm.b, dm.h, l, w];
    const out = scope(() =>
      attention(
        tensor(q, shape(dm.lq, dm.d)),
        tensor(k, shape(dm.lk, dm.d)),
        tensor(v, shape(dm.lk, dm.dv)),
        opts,
      )
    );
    assertClose(await out.read(), reference(q, k, v, dm, 0.6), { what: "out" });
    out.dispose();
    const r = randArray(dm.b * dm.h * dm.lq * dm.dv, 7);
    const qp = parameter(q, shape(dm.lq, dm.d)), kp = parameter(k, shape(dm.lk, dm.d));
    const vp = parameter(v, shape(dm.lk, dm.dv));
    scope(() => backward(sum(mul(attention(qp, kp, vp, opts), tensor(r, shape(dm.lq, dm.dv))))));
    const ref = referenceGrads(q, k, v, r, dm, 0.6);
    assertClose(await qp.grad!.read(), ref.dq, { what: "dq", atol: 1e-4 });
    assertClose(await kp.grad!.read(), ref.dk, { what: "dk", atol: 2e-4, rtol: 1e-4 });
    assertClose(await vp.grad!.read(), ref.dv, { what: "dv", atol: 2e-4, rtol: 1e-4 });
    for (const t of [qp, kp, vp]) t.dispose();
  });
}

Deno.test("GEMM attention gradient matches finite differences (sliced queries)", async () => {
  const dm = { b: 1, h: 1, lq: 70, lk: 9, d: 16, dv: 4 };
  const { q, k, v } = inputs(dm, 33);
  await gradCheck(
    (qq, kk, vv) => attention(qq, kk, vv, { route: "gemm", chunkBytes: 64 * 9 * 4 }),
    [
      { data: q, shape: [1, 1, dm.lq, dm.d] },
      { data: k, shape: [1, 1, dm.lk, dm.d] },
      { data: v, shape: [1, 1, dm.lk, dm.dv] },
    ],
    { maxPoints: 12 },
  );
});

Deno.test("GEMM attention of k and v alone, and of q alone", async () => {
  const dm = { b: 2, h: 1, lq: 6, lk: 5, d: 3, dv: 2 };
  const { q, k, v } = inputs(dm, 41);
  const opts: AttentionOptions = { route: "gemm" };
  const qt = tensor(q, [2, 1, dm.lq, dm.d]).keep();
  const kt = tensor(k, [2, 1, dm.lk, dm.d]).keep();
  const vt = tensor(v, [2, 1, dm.lk, dm.dv]).keep();
  await gradCheck((kk, vv) => attention(qt, kk, vv, opts), [
    { data: k, shape: [2, 1, dm.lk, dm.d] },
    { data: v, shape: [2, 1, dm.lk, dm.dv] },
  ], { maxPoints: 10 });
  await gradCheck((qq) => attention(qq, kt, vt, opts), [
    { data: q, shape: [2, 1, dm.lq, dm.d] },
  ], { maxPoints: 10 });
  for (const t of [qt, kt, vt]) t.dispose();
});

Deno.test("GEMM attention's scores stay within two chunks at their peak", async () => {
  const dm = { b: 1, h: 1, lq: 1024, lk: 1024, d: 8, dv: 8 };
  const { q, k, v } = inputs(dm, 60, 3);
  const chunkBytes = 256 * 1024 * 4;
  const qp = parameter(q, [1, 1, dm.lq, dm.d]);
  const kp = parameter(k, [1, 1, dm.lk, dm.d]);
  const vp = parameter(v, [1, 1, dm.lk, dm.dv]);
  const base = pool.liveBytes;
  pool.peakLiveBytes = base;
  const head = scope(() => {
    const o = attention(qp, kp, vp, { route: "gemm", chunkBytes });
    backward(sum(o));
    return o;
  });
  const got = await head.read();
  const extra = pool.peakLiveBytes - base;
  // Two chunks of scores (P, dP), plus the output, gradients and per-slice partials (small).
  if (extra > 2 * chunkBytes + 1024 * 1024) {
    throw new Error(`GEMM attention held ${extra} bytes at peak (chunks of ${chunkBytes})`);
  }
  for (const r of [0, 513, 1023]) {
    const want = reference(q, k, v, dm, 1 / Math.sqrt(dm.d), r, r + 1);
    assertClose(got.slice(r * dm.dv, (r + 1) * dm.dv), want, { what: `row ${r}` });
  }
  head.dispose();
  for (const p of [qp, kp, vp]) p.dispose();
});

Deno.test("attention takes the GEMM form for long keys and wide heads, flash otherwise", () => {
  const limits = { align: 256, maxBinding: 2 ** 31 };
  const plan = (bh: number, lq: number, lk: number, d: number, dv: number) =>
    planAttention({ bh, lq, lk, d, dv, scale: 1 }, limits);
  // CGNet's cgm_2: 1 GiB of scores per head → 8192-row slices.
  assertEquals(plan(8, 16384, 16384, 32, 256), {
    route: "gemm",
    heads: 1,
    rows: 8192,
    slices: 2,
  });
  // MiT-b0 stage 1: 16,384 queries over 256 keys, one chunk of 128 MiB.
  assertEquals(plan(8, 16384, 256, 32, 32), { route: "gemm", heads: 8, rows: 16384, slices: 1 });
  assertEquals(plan(4096, 512, 512, 40, 40).route, "flash"); // HANet's rows: many short heads
  assertEquals(plan(8, 16384, 4, 8, 8).route, "flash"); // BIT's decoder
  // A head's scores past the chunk with heads whose offsets cannot be aligned: flash.
  assertEquals(plan(3, 16385, 16385, 5, 7).route, "flash");
  assertEquals(plan(4, 64, 64, 160, 160).route, "gemm"); // wider than the flash kernels
});
