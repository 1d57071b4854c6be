import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { ARENA_ALIGN, ParamArena } from "../../engine/arena.ts";
import { backward } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { mul } from "../../engine/ops/elementwise.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { AdamW } from "../../engine/optim/adamw.ts";
import { pool } from "../../engine/pool.ts";
import { stats } from "../../engine/recorder.ts";
import { encodeSafetensors, loadInto, readAll } from "../../engine/safetensors.ts";
import { scope } from "../../engine/scope.ts";
import { parameter, type Tensor, tensor, write } from "../../engine/tensor.ts";
import { assertClose, randArray } from "../util.ts";
import { AdamWRef } from "./adamw_ref.ts";

await initDevice();

const SHAPES = [[7], [13, 5], [1]];

function makeParams(seed: number): Tensor[] {
  return SHAPES.map((s, k) => {
    const n = s.reduce((p, d) => p * d, 1);
    return parameter(randArray(n, seed + k), s, `p${k}`);
  });
}

/** Per-step gradients, some tiny (ε matters) and some exactly zero. */
function gradsFor(step: number): Float32Array[] {
  return SHAPES.map((s, k) => {
    const n = s.reduce((p, d) => p * d, 1);
    const g = randArray(n, 100 * step + k, -2, 2);
    if (k === 0) g[3] = 1e-9;
    if (k === 1) g[10] = 0;
    return g;
  });
}

const LRS = [0.1, 0.05, 0.2, 0.01, 0.1, 0.07, 0.3];

async function readF64(ts: Tensor[]): Promise<Float64Array[]> {
  return (await readAll(ts)).map((b, i) => Float64Array.from(new Float32Array(b, 0, ts[i].size)));
}

Deno.test("arena: parameters packed at aligned offsets keep their values", async () => {
  const before = pool.live;
  const params = makeParams(1);
  const arena = new ParamArena(params);
  assertEquals(pool.live, before, "the parameters' own buffers went back to the pool");
  for (const { param, offset } of arena.slots) {
    assertEquals(offset % ARENA_ALIGN, 0);
    assert(param.storage.buffer === arena.paramBuffer);
    assert(param.grad!.storage.buffer === arena.gradBuffer);
    assertEquals(param.grad!.storage.offset, offset);
  }
  assertEquals(arena.bytes % ARENA_ALIGN, 0);
  const flat = (await arena.flatParams.read()) as Float32Array;
  arena.slots.forEach(({ param, offset }, k) => {
    const n = param.size;
    assertClose(flat.subarray(offset / 4, offset / 4 + n), randArray(n, 1 + k), {
      what: param.name,
    });
  });
  const padding = flat.subarray(7, 64);
  assert(padding.every((x) => x === 0), "padding stays zero");
  assertClose(await params[1].read(), randArray(65, 2), { what: "p1 via its own tensor" });
  arena.dispose();
  assert(params.every((p) => p.disposed));
});

Deno.test("arena: backward accumulates into the arena; zeroGrads is one dispatch", async () => {
  const params = makeParams(2);
  const arena = new ParamArena(params);
  const coefs = SHAPES.map((s, k) => tensor(randArray(s.reduce((p, d) => p * d, 1), 50 + k), s));
  const lossStep = () =>
    scope(() => {
      const l = params.map((p, k) => sum(mul(p, coefs[k])));
      backward(sum(mul(l[0], l[0])));
      for (const x of l.slice(1)) backward(x);
    });
  lossStep();
  lossStep();
  const grads = await readF64(params.map((p) => p.grad!));
  const vals = await readF64(params);
  const c = await readF64(coefs);
  // d/dp0 of (Σ p0·c0)² is 2·(Σ p0·c0)·c0; the others are c_k. Two backward passes: twice that.
  const s0 = vals[0].reduce((a, x, i) => a + x * c[0][i], 0);
  assertClose(grads[0], c[0].map((x) => 4 * s0 * x), { what: "grad p0" });
  assertClose(grads[1], c[1].map((x) => 2 * x), { what: "grad p1" });
  assertClose(grads[2], c[2].map((x) => 2 * x), { what: "grad p2" });
  const d0 = stats.dispatches;
  arena.zeroGrads();
  assertEquals(stats.dispatches - d0, 1);
  const flat = await arena.flatGrads.read();
  assert(flat.every((x) => x === 0), "all gradients zero");
  for (const x of coefs) x.dispose();
  arena.dispose();
});

Deno.test("arena: a gradient accumulated before the move comes along", async () => {
  const [p] = makeParams(8);
  const c = tensor(randArray(7, 9), [7]);
  scope(() => backward(sum(mul(p, c))));
  const arena = new ParamArena([p]);
  assert(p.grad!.storage.buffer === arena.gradBuffer);
  assertClose(await p.grad!.read(), await c.read(), { what: "carried gradient" });
  c.dispose();
  arena.dispose();
});

Deno.test("AdamW matches PyTorch's AdamW in float64 over several steps", async () => {
  const o = { beta1: 0.9, beta2: 0.99, eps: 1e-8, wd: 0.1 };
  const params = makeParams(3);
  const ref = new AdamWRef(await readF64(params), o);
  const opt = new AdamW(params, {
    lr: 1,
    betas: [o.beta1, o.beta2],
    eps: o.eps,
    weightDecay: o.wd,
  });
  for (let step = 0; step < LRS.length; step++) {
    const g = gradsFor(step);
    params.forEach((p, k) => write(p.grad!, g[k]));
    const d0 = stats.dispatches;
    opt.step(LRS[step]);
    assertEquals(stats.dispatches - d0, 1, "one dispatch per step");
    ref.step(g, LRS[step]);
    if (step % 3 === 0 || step === LRS.length - 1) {
      const got = await readF64(params);
      got.forEach((x, k) =>
        assertClose(x, ref.p[k], { atol: 2e-6, rtol: 1e-5, what: `step ${step} p${k}` })
      );
    }
  }
  const st = opt.state();
  assertEquals(await st.step.item(), LRS.length);
  const m = await readF64(params.map((_, k) => st[`exp_avg.${k}`]));
  const v = await readF64(params.map((_, k) => st[`exp_avg_sq.${k}`]));
  params.forEach((_, k) => {
    assertClose(m[k], ref.m[k], { atol: 1e-6, rtol: 1e-5, what: `exp_avg ${k}` });
    assertClose(v[k], ref.v[k], { atol: 1e-7, rtol: 1e-5, what: `exp_avg_sq ${k}` });
  });
  st.step.dispose();
  opt.dispose();
  opt.arena.dispose();
});

Deno.test("AdamW: many steps recorded without a submit each keep their own lr", async () => {
  const o = { beta1: 0.9, beta2: 0.999, eps: 1e-8, wd: 0.01 };
  const params = makeParams(4);
  const ref = new AdamWRef(await readF64(params), o);
  const opt = new AdamW(params, { lr: 0.1 });
  const g = gradsFor(9);
  params.forEach((p, k) => write(p.grad!, g[k]));
  // 40 steps (more than the hyper-parameter ring holds), lr changing every step, no readback.
  for (let step = 0; step < 40; step++) {
    const lr = 0.01 * (1 + (step % 7));
    opt.step(lr);
    ref.step(g, lr);
  }
  const got = await readF64(params);
  got.forEach((x, k) => assertClose(x, ref.p[k], { atol: 1e-5, rtol: 1e-4, what: `p${k}` }));
  opt.dispose();
  opt.arena.dispose();
});

Deno.test("AdamW: a run resumed from a checkpoint continues exactly", async () => {
  const names = (ps: Tensor[]) => Object.fromEntries(ps.map((p, k) => [`w${k}`, p]));
  const run = (opt: AdamW, from: number, to: number) => {
    for (let step = from; step < to; step++) {
      const g = gradsFor(step);
      opt.params.forEach((p, k) => write(p.grad!, g[k]));
      opt.step(LRS[step]);
    }
  };
  const straight = new AdamW(makeParams(5), { lr: 0.1, weightDecay: 0.05 });
  run(straight, 0, 6);
  const expected = await readF64(straight.params);

  const first = new AdamW(makeParams(5), { lr: 0.1, weightDecay: 0.05 });
  run(first, 0, 3);
  const st = first.state();
  const ckpt = { ...names(first.params), ...st };
  const bufs = await readAll(Object.values(ckpt));
  const file = encodeSafetensors(
    Object.fromEntries(
      Object.entries(ckpt).map(([k, t], i) => [k, {
        dtype: t.dtype === "i32" ? "I64" as const : "F32" as const,
        shape: t.shape,
        data: t.dtype === "i32" ? new Int32Array(bufs[i]) : new Float32Array(bufs[i], 0, t.size),
      }]),
    ),
  );
  st.step.dispose();

  const resumed = new AdamW(makeParams(77), { lr: 0.1, weightDecay: 0.05 });
  const st2 = resumed.state();
  loadInto({ ...names(resumed.params), ...st2 }, file);
  await resumed.loadState(st2);
  st2.step.dispose();
  assertEquals(resumed.t, 3);
  run(resumed, 3, 6);
  const got = await readF64(resumed.params);
  got.forEach((x, k) => assertEquals(Array.from(x), Array.from(expected[k]), `p${k} bit for bit`));
  for (const o of [straight, first, resumed]) {
    o.dispose();
    o.arena.dispose();
  }
});

Deno.test("AdamW: loadState copies from other tensors and reports what is missing", async () => {
  const a = new AdamW(makeParams(6), { lr: 0.1 });
  const g = gradsFor(1);
  a.params.forEach((p, k) => write(p.grad!, g[k]));
  a.step();
  a.step();
  const b = new AdamW(makeParams(6), { lr: 0.1 });
  const sa = a.state();
  await b.loadState(sa);
  assertEquals(b.t, 2);
  const sb = b.state();
  for (const k of Object.keys(sa)) {
    assertEquals(Array.from(await sb[k].read()), Array.from(await sa[k].read()), k);
  }
  delete sa["exp_avg_sq.1"];
  let msg = "";
  await b.loadState(sa).catch((e) => msg = e.message);
  assert(msg.includes("exp_avg_sq.1: missing"), msg);
  sa.step.dispose();
  sb.step.dispose();
  for (const o of [a, b]) {
    o.dispose();
    o.arena.dispose();
  }
});
