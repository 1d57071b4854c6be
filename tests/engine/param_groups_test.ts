// Parameter groups: mmengine's custom_keys rule on Open-CD-like names, and the grouped fused AdamW
// step against a float64 PyTorch AdamW with per-group lr and weight decay.

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import { AdamW } from "../../engine/optim/adamw.ts";
import { paramMultipliers, sortedCustomKeys } from "../../engine/optim/param_groups.ts";
import { stats } from "../../engine/recorder.ts";
import { encodeSafetensors, loadInto, readAll } from "../../engine/safetensors.ts";
import { parameter, type Tensor, write } from "../../engine/tensor.ts";
import { assertClose, randArray } from "../util.ts";

await initDevice();

/** The three transformer recipes' keys (configs/{changeformer,changer}/*_cgwx.py). */
const OPENCD = {
  pos_block: { decayMult: 0 },
  norm: { decayMult: 0 },
  head: { lrMult: 10 },
};

Deno.test("custom keys: longest first, ties alphabetical (mmengine's double sort)", () => {
  assertEquals(sortedCustomKeys(["norm", "head", "pos_block"]), ["pos_block", "head", "norm"]);
  assertEquals(sortedCustomKeys(["b", "ab", "a", "ba", "c"]), ["ab", "ba", "a", "b", "c"]);
  // Python compares code points: "Z" (90) before "a" (97).
  assertEquals(sortedCustomKeys(["a", "Z"]), ["Z", "a"]);
});

Deno.test("custom keys: first substring match of the full name wins", () => {
  const names = [
    "backbone.layers.0.0.projection.weight", // patch embed conv: no key
    "backbone.layers.0.0.norm.weight", // patch embed LN
    "backbone.layers.0.1.0.norm1.weight", // block LN
    "backbone.layers.0.1.0.attn.attn.in_proj_weight",
    "backbone.layers.0.2.weight", // MiT's stage-final LN: no "norm" in its name
    "backbone.layers.1.1.0.attn.pos_block.weight",
    "decode_head.convs.0.bn.weight", // "head" (mult 10), not a norm key
    "decode_head.fusion_conv.norm.weight", // "head" is tried before "norm"
    "decode_head.conv_seg.bias",
    "backbone.conv1.0.weight",
    "backbone.bn1.weight",
  ];
  const got = paramMultipliers(names, OPENCD).map((m) => [m.key, m.lrMult, m.decayMult]);
  assertEquals(got, [
    [null, 1, 1],
    ["norm", 1, 0],
    ["norm", 1, 0],
    [null, 1, 1],
    [null, 1, 1],
    ["pos_block", 1, 0],
    ["head", 10, 1],
    ["head", 10, 1],
    ["head", 10, 1],
    [null, 1, 1],
    [null, 1, 1],
  ]);
  // A parameter of the root module is matched as ".name", as upstream's f'{prefix}.{name}'.
  assertEquals(paramMultipliers(["cls"], { ".c": { lrMult: 2 } })[0].lrMult, 2);
  let msg = "";
  try {
    paramMultipliers(["a.b"], { b: { lrMult: -1 } });
  } catch (e) {
    msg = (e as Error).message;
  }
  assert(msg.includes('"b"') && msg.includes("lrMult"), msg);
});

/** 130 elements span three 64-word blocks; 1 and 64 hit block edges. */
const SHAPES = [[130], [5, 3], [1], [64], [9]];
const MULTS = [
  { lrMult: 1, decayMult: 1 },
  { lrMult: 10, decayMult: 1 },
  { lrMult: 1, decayMult: 0 },
  { lrMult: 10, decayMult: 1 },
  { lrMult: 0.5, decayMult: 3 },
];

function makeParams(seed: number): Tensor[] {
  return SHAPES.map((s, k) => parameter(randArray(s.reduce((p, d) => p * d, 1), seed + k), s));
}

async function readF64(ts: Tensor[]): Promise<Float64Array[]> {
  return (await readAll(ts)).map((b, i) => Float64Array.from(new Float32Array(b, 0, ts[i].size)));
}

/** torch.optim.AdamW with one group per parameter (lr_k, wd_k), float64. */
function refStep(
  s: { p: Float64Array[]; m: Float64Array[]; v: Float64Array[]; t: number },
  g: Float32Array[],
  lr: number,
  wd: number,
  b1: number,
  b2: number,
  eps: number,
): void {
  s.t++;
  const bc1 = 1 - b1 ** s.t, bc2 = 1 - b2 ** s.t;
  s.p.forEach((p, k) => {
    const lrk = lr * MULTS[k].lrMult, wdk = wd * MULTS[k].decayMult;
    for (let i = 0; i < p.length; i++) {
      p[i] *= 1 - lrk * wdk;
      s.m[k][i] = b1 * s.m[k][i] + (1 - b1) * g[k][i];
      s.v[k][i] = b2 * s.v[k][i] + (1 - b2) * g[k][i] ** 2;
      p[i] -= (lrk / bc1) * s.m[k][i] / (Math.sqrt(s.v[k][i]) / Math.sqrt(bc2) + eps);
    }
  });
}

const grads = (step: number) =>
  SHAPES.map((s, k) => randArray(s.reduce((p, d) => p * d, 1), 1000 * step + k, -2, 2));

Deno.test("AdamW with groups matches torch's per-group AdamW in float64, one dispatch", async () => {
  const [b1, b2, eps, wd] = [0.9, 0.999, 1e-8, 0.05];
  const params = makeParams(11);
  const p0 = await readF64(params);
  const ref = {
    p: p0,
    m: p0.map((x) => new Float64Array(x.length)),
    v: p0.map((x) => new Float64Array(x.length)),
    t: 0,
  };
  const opt = new AdamW(params, {
    lr: 1,
    betas: [b1, b2],
    eps,
    weightDecay: wd,
    multipliers: MULTS,
  });
  assertEquals(opt.groups.length, 4);
  assertEquals(opt.groupOf, [0, 1, 2, 1, 3]);
  const lrs = [0.02, 0.01, 0.03, 0.005, 0.02];
  for (let step = 0; step < lrs.length; step++) {
    const g = grads(step);
    params.forEach((p, k) => write(p.grad!, g[k]));
    const d0 = stats.dispatches;
    opt.step(lrs[step]);
    assertEquals(stats.dispatches - d0, 1, "one dispatch per step");
    refStep(ref, g, lrs[step], wd, b1, b2, eps);
  }
  const got = await readF64(params);
  got.forEach((x, k) => assertClose(x, ref.p[k], { atol: 2e-6, rtol: 1e-5, what: `p${k}` }));
  // The groups really differ: the lr ×10 parameters moved further than the same update at ×1.
  const moved = (k: number) => Math.abs(got[k][0] - p0[k][0]);
  assert(moved(1) > 0 && moved(2) > 0);
  opt.dispose();
  opt.arena.dispose();
});

Deno.test("AdamW with groups: state files keep their keys and resume bit for bit", async () => {
  const run = (opt: AdamW, from: number, to: number) => {
    for (let step = from; step < to; step++) {
      const g = grads(step + 7);
      opt.params.forEach((p, k) => write(p.grad!, g[k]));
      opt.step(0.01);
    }
  };
  const mk = (seed: number) => new AdamW(makeParams(seed), { lr: 0.01, multipliers: MULTS });
  const straight = mk(3);
  run(straight, 0, 4);
  const expected = await readF64(straight.params);
  const first = mk(3);
  run(first, 0, 2);
  const st = first.state();
  const keys = Object.keys(st).sort();
  // Two moments per parameter, step and skipped_steps: nothing per group.
  assertEquals(keys.length, 2 * SHAPES.length + 2);
  const all = { ...Object.fromEntries(first.params.map((p, k) => [`w${k}`, p])), ...st };
  const bufs = await readAll(Object.values(all));
  const file = encodeSafetensors(Object.fromEntries(
    Object.entries(all).map(([k, t], i) => [k, {
      dtype: t.dtype === "i32" ? "I64" as const : "F32" as const,
      shape: t.shape,
      data: t.dtype === "i32" ? new Int32Array(bufs[i]) : new Float32Array(bufs[i], 0, t.size),
    }]),
  ));
  for (const t of Object.values(st)) if (!t.kept) t.dispose();
  const resumed = mk(99);
  const st2 = resumed.state();
  loadInto({ ...Object.fromEntries(resumed.params.map((p, k) => [`w${k}`, p])), ...st2 }, file);
  await resumed.loadState(st2);
  for (const t of Object.values(st2)) if (!t.kept) t.dispose();
  run(resumed, 2, 4);
  const got = await readF64(resumed.params);
  got.forEach((x, k) => assertEquals(Array.from(x), Array.from(expected[k]), `p${k}`));
  for (const o of [straight, first, resumed]) {
    o.dispose();
    o.arena.dispose();
  }
});

Deno.test("AdamW: one shared non-unit multiplier pair needs no block table", async () => {
  const params = makeParams(21);
  const p0 = await readF64(params);
  const opt = new AdamW(params, {
    lr: 0.1,
    weightDecay: 0.2,
    multipliers: SHAPES.map(() => ({ lrMult: 0.5, decayMult: 0 })),
  });
  assertEquals(opt.groups.length, 1);
  params.forEach((p) => write(p.grad!, new Float32Array(p.size))); // zero gradient
  opt.step();
  // Zero gradient and no decay: Adam's update is 0 and p·(1 − lr·0) = p.
  const got = await readF64(params);
  got.forEach((x, k) => assertEquals(Array.from(x), Array.from(p0[k])));
  let msg = "";
  try {
    new AdamW(makeParams(1), { lr: 1, multipliers: [{ lrMult: 1, decayMult: 1 }] });
  } catch (e) {
    msg = (e as Error).message;
  }
  assert(msg.includes("1 multiplier pairs for 5 parameters"), msg);
  opt.dispose();
  opt.arena.dispose();
});
