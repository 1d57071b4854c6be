import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { ARENA_ALIGN, ParamArena } from "../../engine/arena.ts";
import { backward } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { add, mul } from "../../engine/ops/elementwise.ts";
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

/** Free the tensors state() made (`step`, `skipped_steps`; the moments are the arena's views). */
function disposeState(st: Record<string, Tensor>): void {
  for (const t of Object.values(st)) if (!t.kept) t.dispose();
}

/** A safetensors file of `tensors` (i32 as I64, as torch saves `step`). */
async function fileOf(tensors: Record<string, Tensor>): Promise<Uint8Array> {
  const bufs = await readAll(Object.values(tensors));
  return encodeSafetensors(
    Object.fromEntries(
      Object.entries(tensors).map(([k, t], i) => [k, {
        dtype: t.dtype === "i32" ? "I64" as const : "F32" as const,
        shape: t.shape,
        data: t.dtype === "i32" ? new Int32Array(bufs[i]) : new Float32Array(bufs[i], 0, t.size),
      }]),
    ),
  );
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
  disposeState(st);
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
  const file = await fileOf({ ...names(first.params), ...st });
  disposeState(st);

  const resumed = new AdamW(makeParams(77), { lr: 0.1, weightDecay: 0.05 });
  const st2 = resumed.state();
  loadInto({ ...names(resumed.params), ...st2 }, file);
  await resumed.loadState(st2);
  disposeState(st2);
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
  disposeState(sa);
  disposeState(sb);
  for (const o of [a, b]) {
    o.dispose();
    o.arena.dispose();
  }
});

// Parameters the loss does not reach (modules built but never called, HANet's c1..c4_conv):
// torch's AdamW skips a None grad, so value and moments stay and the parameter's own step count
// (its bias correction) does not advance; a parameter reached with an all-zero gradient is
// stepped (decayed). Gradients come from a real backward after zeroGrad, as in training.
const SKIP_SHAPES = [[7], [13, 5], [1], [6], [3]];
const SKIP_MULTS = [1, 1, 0.5, 2, 1].map((lrMult) => ({ lrMult, decayMult: 1 }));
const SKIP_O = { beta1: 0.9, beta2: 0.99, eps: 1e-8, wd: 0.1 };

function makeSkipParams(seed: number): Tensor[] {
  return SKIP_SHAPES.map((s, k) => {
    const n = s.reduce((p, d) => p * d, 1);
    return parameter(randArray(n, seed + k), s, `q${k}`);
  });
}

/** Each parameter's gradient at `step`, null where the loss leaves it out: q0 always reached,
 * q1 only at step 0, q2 always with a zero gradient, q3 not at steps 0, 3, 6 (reached first at
 * its own step 1 when the optimiser's is 2), q4 never. */
function skipGrads(step: number): (Float32Array | null)[] {
  return SKIP_SHAPES.map((s, k) => {
    const n = s.reduce((p, d) => p * d, 1);
    if (k === 1 && step > 0) return null;
    if (k === 3 && step % 3 === 0) return null;
    if (k === 4) return null;
    return k === 2 ? new Float32Array(n) : randArray(n, 100 * step + k, -2, 2);
  });
}

function makeSkipOpt(seed: number): AdamW {
  return new AdamW(makeSkipParams(seed), {
    lr: 1,
    betas: [SKIP_O.beta1, SKIP_O.beta2],
    eps: SKIP_O.eps,
    weightDecay: SKIP_O.wd,
    multipliers: SKIP_MULTS,
  });
}

/** zeroGrad, backward of Σ_k sum(q_k · g_k) over the reached parameters (so q_k's gradient is
 * g_k exactly), then the step; returns the dispatches the step recorded. */
function skipStep(opt: AdamW, step: number): number {
  const g = skipGrads(step);
  opt.zeroGrad();
  scope(() => {
    const terms = opt.params.flatMap((p, k) => g[k] ? [sum(mul(p, tensor(g[k]!, p.shape)))] : []);
    backward(terms.reduce((a, b) => add(a, b)));
  });
  const d0 = stats.dispatches;
  opt.step(LRS[step]);
  return stats.dispatches - d0;
}

Deno.test("AdamW leaves a parameter without a gradient untouched, as torch skips a None grad", async () => {
  const opt = makeSkipOpt(30);
  const params = opt.params;
  const initial = await readF64(params);
  const ref = new AdamWRef(await readF64(params), { ...SKIP_O, multipliers: SKIP_MULTS });
  let afterFirst: Float64Array[] = [];
  for (let step = 0; step < LRS.length; step++) {
    assertEquals(skipStep(opt, step), 1, "one dispatch per step");
    assertEquals(
      params.map((p) => p.hasGrad),
      skipGrads(step).map((g) => g !== null),
      `step ${step}: the parameters backward reached`,
    );
    ref.step(skipGrads(step), LRS[step]);
    if (step === 0) {
      const s0 = opt.state();
      afterFirst = await readF64([params[1], s0["exp_avg.1"], s0["exp_avg_sq.1"]]);
      disposeState(s0);
    }
  }
  const st = opt.state();
  const [m, v] = await Promise.all(
    ["exp_avg", "exp_avg_sq"].map((k) => readF64(params.map((_, i) => st[`${k}.${i}`]))),
  );
  const got = await readF64(params);
  params.forEach((_, k) => {
    assertClose(got[k], ref.p[k], { atol: 2e-6, rtol: 1e-5, what: `q${k}` });
    assertClose(m[k], ref.m[k], { atol: 1e-6, rtol: 1e-5, what: `exp_avg ${k}` });
    assertClose(v[k], ref.v[k], { atol: 1e-7, rtol: 1e-5, what: `exp_avg_sq ${k}` });
  });
  // Untouched, bit for bit: q4 never had a gradient, q1 none after step 0.
  assertEquals(Array.from(got[4]), Array.from(initial[4]), "q4 value");
  assert([...m[4], ...v[4]].every((x) => x === 0), "q4 moments");
  [got[1], m[1], v[1]].forEach((x, i) =>
    assertEquals(Array.from(x), Array.from(afterFirst[i]), `q1 value and moments after step 0`)
  );
  assert(m[1].some((x) => x !== 0), "q1's moments from step 0 kept");
  // Reached with a zero gradient: decayed (torch's grad is a zero tensor, not None).
  assert(got[2].every((x, i) => Math.abs(x) < Math.abs(initial[2][i])), "q2 decayed");
  assertEquals(opt.skippedSteps, [0, LRS.length - 1, 0, 3, LRS.length]);
  assertEquals(Array.from(await st.skipped_steps.read()), opt.skippedSteps);
  assertEquals(ref.steps, opt.skippedSteps.map((s) => LRS.length - s));

  // After zeroGrad without a backward nothing has a gradient: the step records nothing.
  opt.zeroGrad();
  const d0 = stats.dispatches;
  opt.step();
  assertEquals(stats.dispatches - d0, 0);
  assertEquals(Array.from((await readF64([params[0]]))[0]), Array.from(got[0]));
  disposeState(st);
  opt.dispose();
  opt.arena.dispose();
});

Deno.test("AdamW: skipped steps are saved; a resume continues exactly; older files load", async () => {
  const names = (ps: Tensor[]) => Object.fromEntries(ps.map((p, k) => [`w${k}`, p]));
  const straight = makeSkipOpt(40);
  for (let step = 0; step < 6; step++) skipStep(straight, step);
  const expected = await readF64(straight.params);

  const first = makeSkipOpt(40);
  for (let step = 0; step < 4; step++) skipStep(first, step);
  const st = first.state();
  const file = await fileOf({ ...names(first.params), ...st });
  disposeState(st);

  const resumed = makeSkipOpt(88);
  const st2 = resumed.state();
  loadInto({ ...names(resumed.params), ...st2 }, file);
  await resumed.loadState(st2);
  disposeState(st2);
  assertEquals(resumed.skippedSteps, first.skippedSteps);
  for (let step = 4; step < 6; step++) skipStep(resumed, step);
  const got = await readF64(resumed.params);
  got.forEach((x, k) => assertEquals(Array.from(x), Array.from(expected[k]), `q${k} bit for bit`));

  // A file saved before skipped_steps existed: strict loading refuses it unless the key is
  // optional, and then no parameter has skipped a step.
  const a = new AdamW(makeParams(9), { lr: 0.1 });
  const g = gradsFor(2);
  a.params.forEach((p, k) => write(p.grad!, g[k]));
  a.step();
  const sa = a.state();
  delete sa.skipped_steps;
  const old = await fileOf(sa);
  disposeState(a.state());
  const b = new AdamW(makeParams(9), { lr: 0.1 });
  const sb = b.state();
  let msg = "";
  try {
    loadInto(sb, old);
  } catch (e) {
    msg = (e as Error).message;
  }
  assert(msg.includes("missing from the file: skipped_steps"), msg);
  const r = loadInto(sb, old, { optional: AdamW.optionalState });
  assertEquals(r.missing, ["skipped_steps"]);
  await b.loadState(sb);
  assertEquals(b.t, 1);
  assertEquals(b.skippedSteps, [0, 0, 0]);
  for (const x of [sa, sb]) disposeState(x);
  for (const o of [straight, first, resumed, a, b]) {
    o.dispose();
    o.arena.dispose();
  }
});
