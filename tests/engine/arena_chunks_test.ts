// An arena larger than one storage binding (CGNet's 135 MB against the software adapter's
// 128 MiB) is updated and zeroed chunk by chunk: forced here with a 16 KiB binding limit on an
// odd-sized arena whose parameters straddle the chunk boundaries, against the float64 AdamW and
// against the same arena bound whole, bit for bit; also with a parameter across a boundary that
// has no gradient (left untouched through the block table bound per chunk).

import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import { chunkRanges, ParamArena } from "../../engine/arena.ts";
import { device, initDevice } from "../../engine/device.ts";
import { run } from "../../engine/launch.ts";
import { AdamW } from "../../engine/optim/adamw.ts";
import { readAll } from "../../engine/safetensors.ts";
import { stats } from "../../engine/recorder.ts";
import { parameter, Storage, Tensor, write } from "../../engine/tensor.ts";
import { fillKernel } from "../../kernels/elementwise.ts";
import { assertClose, randArray } from "../util.ts";
import { AdamWRef } from "./adamw_ref.ts";

await initDevice();

/** 3001 + 1001 + 5 + 4097 + 1 words: 33,280 bytes once aligned, so 16 KiB chunks cut the first
 * and fourth parameters and leave a short last chunk. */
const SHAPES = [[3001], [77, 13], [5], [4097], [1]];
const LIMIT = 16384;
/** Two groups (a head at 10× LR without decay), so the block table is bound per chunk too. */
const MULTS = [1, 10, 1, 10, 1].map((m) => ({ lrMult: m, decayMult: m === 10 ? 0 : 1 }));
const LRS = [0.05, 0.1, 0.02, 0.08];
const O = { beta1: 0.9, beta2: 0.99, eps: 1e-8, wd: 0.1 };

const sizeOf = (s: number[]) => s.reduce((p, d) => p * d, 1);
const makeParams = () => SHAPES.map((s, k) => parameter(randArray(sizeOf(s), 7 + k), s, `p${k}`));
const gradsFor = (step: number) =>
  SHAPES.map((s, k) => randArray(sizeOf(s), 300 * step + k, -2, 2));

async function readF64(ts: Tensor[]): Promise<Float64Array[]> {
  return (await readAll(ts)).map((b, i) => Float64Array.from(new Float32Array(b, 0, ts[i].size)));
}

/** The parameter marked as without a gradient (backward did not reach it) in the skip variant:
 * p3, which straddles a chunk boundary. */
const SKIPPED = 3;

/** Steps an optimiser through LRS with the same gradients; returns the dispatches per step. */
function steps(opt: AdamW, skip: boolean): number {
  let per = 0;
  LRS.forEach((lr, step) => {
    const g = gradsFor(step);
    opt.params.forEach((p, k) => {
      write(p.grad!, g[k]);
      p.hasGrad = !(skip && k === SKIPPED);
    });
    const d0 = stats.dispatches;
    opt.step(lr);
    per = stats.dispatches - d0;
  });
  return per;
}

Deno.test("chunkRanges: the whole arena where it fits, else aligned chunks and a short last", () => {
  assertEquals(chunkRanges(33280, 2 ** 27, 16384), [{ offset: 0, bytes: 33280 }]);
  assertEquals(chunkRanges(33280, 20000, 16384), [
    { offset: 0, bytes: 16384 },
    { offset: 16384, bytes: 16384 },
    { offset: 32768, bytes: 512 },
  ]);
  throws(() => chunkRanges(33280, 1000, 16384), /below one chunk/);
});

for (
  const [grouped, skip] of [[false, false], [true, false], [false, true]] as const
) {
  const what = skip
    ? "one group, p3 without a gradient"
    : grouped
    ? "with two parameter groups"
    : "one group";
  Deno.test(`AdamW over a chunked arena matches float64 across chunk boundaries (${what})`, async () => {
    const mults = grouped ? MULTS : undefined;
    const params = makeParams();
    const initial3 = await params[SKIPPED].read();
    const arena = new ParamArena(params, { bindingLimit: LIMIT });
    assertEquals(arena.chunks.length, 3);
    assert(arena.slots[3].offset < 2 * LIMIT && arena.slots[3].offset + 4097 * 4 > 2 * LIMIT);
    const ref = new AdamWRef(await readF64(params), { ...O, multipliers: mults });
    const opt = new AdamW(arena, {
      lr: 1,
      betas: [O.beta1, O.beta2],
      eps: O.eps,
      weightDecay: O.wd,
      multipliers: mults,
    });
    assertEquals(steps(opt, skip), 3, "one dispatch per chunk");
    LRS.forEach((lr, step) =>
      ref.step(gradsFor(step).map((g, k) => skip && k === SKIPPED ? null : g), lr)
    );
    (await readF64(params)).forEach((x, k) =>
      assertClose(x, ref.p[k], { atol: 2e-6, rtol: 1e-5, what: `p${k}` })
    );
    const st = opt.state();
    const m = await readF64(params.map((_, k) => st[`exp_avg.${k}`]));
    m.forEach((x, k) => assertClose(x, ref.m[k], { atol: 1e-6, rtol: 1e-5, what: `exp_avg ${k}` }));
    if (skip) {
      const p3 = await params[SKIPPED].read();
      assert(p3.every((x, i) => Object.is(x, initial3[i])), "p3 moved across the chunks");
      assert(m[SKIPPED].every((x) => x === 0), "p3's moments moved");
    }

    // The same arena bound whole takes one dispatch and ends bit for bit the same.
    const whole = new AdamW(makeParams(), {
      lr: 1,
      betas: [O.beta1, O.beta2],
      eps: O.eps,
      weightDecay: O.wd,
      multipliers: mults,
    });
    assertEquals(whole.arena.chunks.length, 1);
    assertEquals(steps(whole, skip), 1);
    const [a, b] = [await arena.flatParams.read(), await whole.arena.flatParams.read()];
    assert(a.every((x, i) => Object.is(x, b[i])), "chunked and whole arenas differ");

    const d0 = stats.dispatches;
    arena.zeroGrads();
    assertEquals(stats.dispatches - d0, 3);
    assert((await arena.flatGrads.read()).every((x) => x === 0), "every chunk's gradients zeroed");
    for (const t of Object.values(st)) if (!t.kept) t.dispose();
    for (const o of [opt, whole]) {
      o.dispose();
      o.arena.dispose();
    }
  });
}

Deno.test("a binding over the device's storage limit is refused naming the op and the fix", () => {
  const limit = device().limits.maxStorageBufferBindingSize;
  const bytes = Math.min(limit + 256, device().limits.maxBufferSize);
  if (bytes <= limit) return; // a device whose buffers cannot outgrow a binding
  const buffer = device().createBuffer({
    size: bytes,
    usage: GPUBufferUsage.STORAGE,
    label: "big",
  });
  const t = new Tensor([bytes / 4], "f32", new Storage(buffer, 0, bytes, false));
  throws(
    () => run(fillKernel(bytes / 4, 0), [], [t]),
    /fill: binding 0 \('big'.*ParamArena\.chunks/,
  );
  buffer.destroy();
});
