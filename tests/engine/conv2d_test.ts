import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import { conv2d, type Conv2dOptions, foldBatchNorm } from "../../engine/ops/conv2d.ts";
import {
  convForwardRaw,
  convInputGradRaw,
  convWeightGradRaw,
  kernelWeightGradRaw,
  packWeights,
  runImplicitGemm,
  runWinograd,
  runWinograd4,
  runWinograd4Fused,
  winograd4FusedWeightGradRaw,
  winogradWeightGradRaw,
} from "../../engine/ops/conv2d_launch.ts";
import { scope } from "../../engine/scope.ts";
import { run } from "../../engine/launch.ts";
import { empty, type Tensor, tensor } from "../../engine/tensor.ts";
import { convGeometry, NO_EPILOGUE, pair } from "../../kernels/conv2d.ts";
import { implicitGemmKernel, tapMajorFits } from "../../kernels/conv2d_gemm.ts";
import {
  dgradGemmSpecs,
  forwardGemmSpec,
  GEMM_TILES,
  pickForwardGemm,
  pickGemmTile,
} from "../../kernels/conv2d_gemm_plan.ts";
import { dgradWinogradSpec, forwardWinogradSpec } from "../../kernels/conv2d_winograd.ts";
import {
  fusedWgradSplits,
  planDgrad,
  planForward,
  planWgrad,
  winograd4Fits,
  winogradFits,
  winogradFitsDgrad,
  winogradWgradFits,
} from "../../kernels/conv_plan.ts";
import { pickWgradTile } from "../../kernels/conv2d_wgrad.ts";
import { activeProfile, withProfile } from "../../kernels/device_profile.ts";
import { activationRef, assertClose, gradCheck, randArray } from "../util.ts";
import { convRef, dgradRef, wgradRef } from "./conv_ref.ts";

await initDevice();

// ---- cases ---------------------------------------------------------------------------------

interface Case {
  name: string;
  x: number[];
  w: number[];
  opts?: Omit<Conv2dOptions, "bias" | "preluSlope">;
  bias?: boolean;
  slopes?: number;
}

const B = 2, H = 7, W = 9;
const cases: Case[] = [
  { name: "3→5 k3 p1 bias", x: [B, 3, H, W], w: [5, 3, 3, 3], opts: { padding: 1 }, bias: true },
  {
    name: "3→5 k3 s2 p1 silu",
    x: [B, 3, H, W],
    w: [5, 3, 3, 3],
    opts: { stride: 2, padding: 1, activation: "silu" },
    bias: true,
  },
  { name: "3→5 k3 d2 p2", x: [B, 3, H, W], w: [5, 3, 3, 3], opts: { padding: 2, dilation: 2 } },
  {
    name: "3→5 1×1 relu",
    x: [B, 3, H, W],
    w: [5, 3, 1, 1],
    opts: { activation: "relu" },
    bias: true,
  },
  {
    name: "5→3 k3×2 s(2,1) p(1,0) sigmoid",
    x: [B, 5, H, W],
    w: [3, 5, 3, 2],
    opts: { stride: [2, 1], padding: [1, 0], activation: "sigmoid" },
    bias: true,
  },
  {
    name: "depthwise 5 k3 p1 silu",
    x: [B, 5, H, W],
    w: [5, 1, 3, 3],
    opts: { padding: 1, groups: 5, activation: "silu" },
    bias: true,
  },
  {
    name: "depthwise 5 k5 s2 p2",
    x: [B, 5, H, W],
    w: [5, 1, 5, 5],
    opts: { stride: 2, padding: 2, groups: 5 },
  },
  {
    name: "mixing 10→5 groups 5 prelu",
    x: [B, 10, H, W],
    w: [5, 2, 3, 3],
    opts: { padding: 1, groups: 5, activation: "prelu" },
    bias: true,
    slopes: 1,
  },
  {
    name: "groups 2 6→10 k3 p1 prelu/channel",
    x: [B, 6, H, W],
    w: [10, 3, 3, 3],
    opts: { padding: 1, groups: 2, activation: "prelu" },
    bias: true,
    slopes: 10,
  },
  {
    name: "5→2 k3 p1 (direct, 5 inputs)",
    x: [B, 5, H, W],
    w: [2, 5, 3, 3],
    opts: { padding: 1 },
    bias: true,
  },
  {
    name: "5→21 k3 p1 (32-tile)",
    x: [B, 5, H, W],
    w: [21, 5, 3, 3],
    opts: { padding: 1 },
    bias: true,
  },
  { name: "3→37 k3 s2 (64-tile)", x: [B, 3, H, W], w: [37, 3, 3, 3], opts: { stride: 2 } },
  {
    name: "5→67 k3 p1 (128-tile)",
    x: [B, 5, H, W],
    w: [67, 5, 3, 3],
    opts: { padding: 1 },
    bias: true,
  },
  {
    name: "3→6 1×1 on 7×8 (vec4 loads and stores) prelu",
    x: [B, 3, H, 8],
    w: [6, 3, 1, 1],
    opts: { activation: "prelu" },
    bias: true,
    slopes: 6,
  },
  {
    name: "3→6 k3 p1 on 7×8 (vec4 stores) silu",
    x: [B, 3, H, 8],
    w: [6, 3, 3, 3],
    opts: { padding: 1, activation: "silu" },
  },
  { name: "6→7 1×1 bias (small 1×1 kernels)", x: [B, 6, H, W], w: [7, 6, 1, 1], bias: true },
];

function makeInputs(c: Case, seed: number) {
  const co = c.w[0];
  return {
    x: randArray(c.x.reduce((a, b) => a * b), seed),
    w: randArray(c.w.reduce((a, b) => a * b), seed + 1, -0.5, 0.5),
    bias: c.bias ? randArray(co, seed + 2) : undefined,
    slopes: c.slopes ? randArray(c.slopes, seed + 3, 0.1, 0.4) : undefined,
  };
}

function runConv(c: Case, xs: Tensor, ws: Tensor, bias?: Tensor, slope?: Tensor): Tensor {
  return conv2d(xs, ws, { ...c.opts, bias, preluSlope: slope });
}

for (const [k, c] of cases.entries()) {
  Deno.test(`conv2d forward ${c.name} matches a float64 reference`, async () => {
    const d = makeInputs(c, 10 * k + 1);
    const g = convGeometry(c.x, c.w, c.opts);
    const y = scope(() =>
      runConv(
        c,
        tensor(d.x, c.x),
        tensor(d.w, c.w),
        d.bias && tensor(d.bias),
        d.slopes && tensor(d.slopes),
      )
    );
    assert.deepEqual([...y.shape], [g.batch, g.co, g.ho, g.wo]);
    const ref = convRef(g, d.x, d.w, d.bias, c.opts?.activation, d.slopes);
    assertClose(await y.read(), ref, { what: c.name, atol: 1e-5, rtol: 1e-4 });
    y.dispose();
  });
}

// Backward kernels against the float64 references, including images large enough that the
// weight gradient is split into several chunks and the GEMMs span several tiles.
const backwardCases: Case[] = [
  ...[0, 2, 6, 11].map((i) => cases[i]),
  { name: "3→5 k3 p1 split 2×3×41×37", x: [2, 3, 41, 37], w: [5, 3, 3, 3], opts: { padding: 1 } },
  {
    name: "depthwise 3 k3 s2 split 2×3×61×67",
    x: [2, 3, 61, 67],
    w: [3, 1, 3, 3],
    opts: { stride: 2, padding: 1, groups: 3 },
  },
  {
    name: "20→36 k3 p1 s2 (dgrad phases)",
    x: [1, 20, 9, 11],
    w: [36, 20, 3, 3],
    opts: { padding: 1, stride: 2 },
  },
  {
    name: "6→9 1×1 s2 (phases with no tap)",
    x: [1, 6, 5, 7],
    w: [9, 6, 1, 1],
    opts: { stride: 2 },
  },
  { name: "6→5 1×1 on 5×8 (vec4 dgrad)", x: [1, 6, 5, 8], w: [5, 6, 1, 1] },
  { name: "6→5 k3 p1 on 5×8 (vec4 dgrad)", x: [1, 6, 5, 8], w: [5, 6, 3, 3], opts: { padding: 1 } },
  {
    name: "2→13 k3 p1 (32×32 wgrad tile)",
    x: [2, 2, 11, 13],
    w: [13, 2, 3, 3],
    opts: { padding: 1 },
  },
  {
    name: "1→20 k3 p1 (32×16 wgrad tile)",
    x: [2, 1, 9, 15],
    w: [20, 1, 3, 3],
    opts: { padding: 1 },
  },
  {
    name: "8→12 k3 p1 (16×64 wgrad tile)",
    x: [2, 8, 9, 11],
    w: [12, 8, 3, 3],
    opts: { padding: 1 },
  },
  {
    // HANet's grouped dilated convs: 4 inputs × 9 taps per group, the direct weight gradient.
    name: "grouped dilated 8→4 g2 k3 d3 p3 (direct weight gradient, 36 weights)",
    x: [B, 8, H, W],
    w: [4, 4, 3, 3],
    opts: { padding: 3, dilation: 3, groups: 2 },
    bias: true,
  },
];

for (const [k, c] of backwardCases.entries()) {
  Deno.test(`conv2d backward kernels ${c.name} match float64 references`, async () => {
    const d = makeInputs(c, 100 + 10 * k);
    const g = convGeometry(c.x, c.w, c.opts);
    const dyData = randArray(g.batch * g.co * g.ho * g.wo, 7 + k);
    const { dx, dw, db } = scope(() => {
      const dy = tensor(dyData, [g.batch, g.co, g.ho, g.wo]);
      const dx = convInputGradRaw(g, dy, tensor(d.w, c.w)).y;
      const { dw, db } = kernelWeightGradRaw(g, tensor(d.x, c.x), dy, true);
      return { dx, dw, db: db! };
    });
    assertClose(await dx.read(), dgradRef(g, dyData, d.w), { what: `${c.name} dx`, atol: 1e-4 });
    const ref = wgradRef(g, d.x, dyData);
    assertClose(await dw.read(), ref.dw, { what: `${c.name} dw`, atol: 1e-3, rtol: 1e-4 });
    assertClose(await db.read(), ref.db, { what: `${c.name} db`, atol: 1e-3, rtol: 1e-4 });
    for (const t of [dx, dw, db]) t.dispose();
  });
}

// Autograd through the fused epilogue: finite differences for x, w, bias (and the slope).
const gradCases = [0, 1, 4, 5, 7, 8, 13, 15].map((i) => cases[i]);
for (const [k, c] of gradCases.entries()) {
  Deno.test(`conv2d gradient ${c.name} matches finite differences`, async () => {
    const d = makeInputs(c, 1000 + 10 * k);
    // PReLU's kink: keep every pre-activation far from zero (small weights, bias ±2 by
    // channel), so no finite-difference step crosses it and both branches are used.
    if (d.slopes) {
      d.w = d.w.map((v) => v * 0.2);
      d.bias = d.bias!.map((_, c) => (c % 2 ? 2 : -2));
    }
    const inputs = [{ data: d.x, shape: c.x }, { data: d.w, shape: c.w }];
    if (d.bias) inputs.push({ data: d.bias, shape: [c.w[0]] });
    if (d.slopes) inputs.push({ data: d.slopes, shape: [d.slopes.length] });
    await gradCheck(
      (...ts: Tensor[]) => {
        const bias = d.bias ? ts[2] : undefined;
        const slope = d.slopes ? ts[d.bias ? 3 : 2] : undefined;
        return runConv(c, ts[0], ts[1], bias, slope);
      },
      inputs,
      { maxPoints: 12 },
    );
  });
}

Deno.test("conv2d on the fused Winograd F(4×4) route: SiLU and bias gradients match finite differences", async () => {
  const xs = [2, 5, 9, 7], ws = [6, 5, 3, 3];
  const allow = { ...activeProfile(), fusedWino4MaxChannels: 16 };
  const g = convGeometry(xs, ws, { padding: 1 });
  withProfile(allow, () => {
    assert.equal(planForward(g).kind, "winograd-f4-fused");
    assert.equal(planDgrad(g).kind, "winograd-f4-fused-flip");
    assert.equal(planWgrad(g, true).kind, "winograd-f4-fused");
  });
  const inputs = [
    { data: randArray(2 * 5 * 9 * 7, 91), shape: xs },
    { data: randArray(6 * 5 * 9, 92, -0.4, 0.4), shape: ws },
    { data: randArray(6, 93), shape: [6] },
  ];
  await withProfile(allow, () =>
    gradCheck(
      (x: Tensor, w: Tensor, bias: Tensor) =>
        conv2d(x, w, { padding: 1, bias, activation: "silu" }),
      inputs,
      { maxPoints: 12 },
    ));
});

Deno.test("conv2d folded BatchNorm equals conv followed by eval BatchNorm", async () => {
  const co = 6, eps = 1e-5;
  const xs = [B, 3, H, W], wsh = [co, 3, 3, 3];
  const x = randArray(B * 3 * H * W, 51), w = randArray(co * 27, 52, -0.5, 0.5);
  const b = randArray(co, 53), mean = randArray(co, 54), vars = randArray(co, 55, 0.2, 2);
  const gamma = randArray(co, 56, 0.5, 1.5), beta = randArray(co, 57);
  const g = convGeometry(xs, wsh, { padding: 1 });
  const plain = convRef(g, x, w, b);
  const hw = g.ho * g.wo;
  const ref = plain.map((v, i) => {
    const c = Math.floor(i / hw) % co;
    const bn = (v - mean[c]) / Math.sqrt(vars[c] + eps) * gamma[c] + beta[c];
    return bn / (1 + Math.exp(-bn));
  });
  const y = scope(() => {
    const f = foldBatchNorm(
      tensor(w, wsh),
      tensor(b),
      tensor(mean),
      tensor(vars),
      tensor(gamma),
      tensor(beta),
      eps,
    );
    return conv2d(tensor(x, xs), f.weight, { bias: f.bias, padding: 1, activation: "silu" });
  });
  assertClose(await y.read(), ref, { what: "conv+BN+SiLU", atol: 2e-5, rtol: 2e-4 });
  y.dispose();
  // Without conv bias and without affine parameters.
  const y2 = scope(() => {
    const f = foldBatchNorm(tensor(w, wsh), null, tensor(mean), tensor(vars), null, null, eps);
    return conv2d(tensor(x, xs), f.weight, { bias: f.bias, padding: 1 });
  });
  const plain2 = convRef(g, x, w);
  const ref2 = plain2.map((v, i) => {
    const c = Math.floor(i / hw) % co;
    return (v - mean[c]) / Math.sqrt(vars[c] + eps);
  });
  assertClose(await y2.read(), ref2, { what: "conv+BN", atol: 2e-5, rtol: 2e-4 });
  y2.dispose();
  // A transposed conv's [Ci, Co, kh, kw] weight: the output channels are axis 1.
  const ci = 4, wt = randArray(ci * co * 9, 58, -0.5, 0.5);
  const f3 = scope(() =>
    foldBatchNorm(
      tensor(wt, [ci, co, 3, 3]),
      tensor(b),
      tensor(mean),
      tensor(vars),
      tensor(gamma),
      tensor(beta),
      eps,
      true,
    )
  );
  const sc = Array.from({ length: co }, (_, c) => gamma[c] / Math.sqrt(vars[c] + eps));
  const wRef = Float64Array.from(wt, (v, i) => v * sc[Math.floor(i / 9) % co]);
  const bRef = Float64Array.from(b, (v, c) => (v - mean[c]) * sc[c] + beta[c]);
  assertClose(await f3.weight.read(), wRef, { what: "transposed fold w", atol: 1e-6 });
  assertClose(await f3.bias.read(), bRef, { what: "transposed fold b", atol: 1e-6 });
  f3.weight.dispose();
  f3.bias.dispose();
});

Deno.test("conv2d rejects mismatched shapes with a clear message", () => {
  scope(() => {
    const x = tensor(new Float32Array(2 * 4 * 5 * 5), [2, 4, 5, 5]);
    assert.throws(() => conv2d(x, tensor(new Float32Array(27), [1, 3, 3, 3])), /groups/);
    assert.throws(
      () => conv2d(x, tensor(new Float32Array(36), [1, 4, 3, 3]), { bias: tensor([1, 2]) }),
      /bias/,
    );
    assert.deepEqual(pair([2, 3], 1), [2, 3]);
  });
});

// Big layers pick wide or tall tiles that the small shapes above never reach: every tile the
// picker can return, forced onto odd shapes (partial tiles on both axes), forward and the
// input gradient with and without stride phases.
Deno.test("implicit GEMM: every tile of the picker, forward and input gradient, odd shapes", async () => {
  const shapes: [number[], number[], { stride?: number; padding?: number }][] = [
    [[2, 7, 13, 11], [70, 7, 3, 3], { padding: 1 }],
    [[1, 70, 9, 7], [33, 70, 3, 3], { padding: 1, stride: 2 }],
    // Reductions of 16 channels per tap: whole slabs in one tap (the tap-major order), forward
    // and the stride-2 input gradient's phases (1, 2 and 4 taps).
    [[2, 16, 9, 7], [16, 16, 3, 3], { padding: 1 }],
    [[1, 5, 11, 9], [16, 5, 3, 3], { padding: 1, stride: 2 }],
  ];
  for (const [xs, ws, opts] of shapes) {
    const g = convGeometry(xs, ws, opts);
    const x = randArray(xs.reduce((a, b) => a * b), 3);
    const w = randArray(ws.reduce((a, b) => a * b), 4, -0.5, 0.5);
    const dy = randArray(g.batch * g.co * g.ho * g.wo, 5);
    const fwdRef = convRef(g, x, w);
    const dxRef = dgradRef(g, dy, w);
    // Tap-major launches also run on packed weights.
    const tiles = Object.entries(GEMM_TILES).flatMap(([name, tile]) => [
      { name, tile, packed: false },
      { name: `${name} packed`, tile, packed: true },
    ]);
    for (const { name, tile, packed } of tiles) {
      const fwd = { ...forwardGemmSpec(g, NO_EPILOGUE, tile), packedWeights: packed };
      if (!packed || tapMajorFits(fwd)) {
        const y = scope(() => {
          const out = empty([g.batch, g.co, g.ho, g.wo]);
          runImplicitGemm(fwd, tensor(x, xs), tensor(w, ws), [], [out]);
          return out;
        });
        assertClose(await y.read(), fwdRef, { what: `${name} forward`, atol: 1e-4 });
        y.dispose();
      }
      const specs = dgradGemmSpecs(g, NO_EPILOGUE, tile).filter((s) => s.ny > 0 && s.nx > 0)
        .map((s) => ({ ...s, packedWeights: packed && tapMajorFits(s) }));
      if (packed && !specs.some((s) => s.packedWeights)) continue;
      const dx = scope(() => {
        const out = empty([g.batch, g.ci, g.h, g.w]);
        const [dyt, wt] = [tensor(dy, [g.batch, g.co, g.ho, g.wo]), tensor(w, ws)];
        for (const s of specs) {
          const wp = s.packedWeights ? packWeights(s, wt) : wt;
          run(implicitGemmKernel(s), [dyt, wp], [out]);
        }
        return out;
      });
      assertClose(await dx.read(), dxRef, { what: `${name} input gradient`, atol: 1e-4 });
      dx.dispose();
    }
  }
});

Deno.test("implicit GEMM split over the reduction: partial sums, then the epilogue (bias, PReLU, saved pre-activation)", async () => {
  const shapes: [number[], number[], { stride?: number; padding?: number }][] = [
    [[2, 7, 13, 11], [10, 7, 3, 3], { padding: 1 }], // 63-deep reduction, odd plane
    [[1, 20, 9, 8], [33, 20, 3, 3], { padding: 1, stride: 2 }], // plane of 4·5: vec4 sums
    [[1, 32, 9, 8], [33, 32, 3, 3], { padding: 1, stride: 2 }], // tap-major, 18 slabs of 16
  ];
  for (const [xs, ws, opts] of shapes) {
    const g = convGeometry(xs, ws, opts);
    const x = randArray(xs.reduce((a, b) => a * b), 6);
    const w = randArray(ws.reduce((a, b) => a * b), 7, -0.5, 0.5);
    const bias = randArray(g.co, 8);
    const slopes = randArray(g.co, 9, 0.05, 0.3);
    const ep = { bias: true, activation: "prelu" as const, savePre: true, slopes: g.co };
    const packs = xs[1] % 16 === 0 ? [false, true] : [false];
    for (const [splits, packed] of [2, 3, 5].flatMap((s) => packs.map((p) => [s, p] as const))) {
      for (const tile of [GEMM_TILES.t32r8, GEMM_TILES.t16]) {
        const [y, pre] = scope(() => {
          const shape = [g.batch, g.co, g.ho, g.wo];
          const outs = [empty(shape), empty(shape)];
          runImplicitGemm(
            { ...forwardGemmSpec(g, ep, tile), splits, packedWeights: packed },
            tensor(x, xs),
            tensor(w, ws),
            [
              tensor(bias, [g.co]),
              tensor(slopes, [g.co]),
            ],
            outs,
          );
          return outs;
        });
        const what = `${xs}→${ws} splits ${splits} packed ${packed} ${JSON.stringify(tile)}`;
        assertClose(await y.read(), convRef(g, x, w, bias, "prelu", slopes), { what, atol: 1e-4 });
        assertClose(await pre.read(), convRef(g, x, w, bias), { what: `${what} pre`, atol: 1e-4 });
        y.dispose();
        pre.dispose();
      }
    }
  }
});

Deno.test("the GEMM tile picker fills the GPU: wide tiles for big layers, smaller for few positions", () => {
  assert.equal(pickGemmTile(256, 8 * 64 * 64), GEMM_TILES.t64w);
  assert.equal(pickGemmTile(128, 8 * 32 * 32), GEMM_TILES.t32r8);
  assert.equal(pickGemmTile(32, 8 * 256 * 256), GEMM_TILES.t32w);
  assert.equal(
    pickGemmTile(32, 8 * 256 * 256, 1, true),
    GEMM_TILES.t32r8,
    "no wide tile on phases",
  );
  assert.equal(pickGemmTile(5, 1e6), GEMM_TILES.t8);
  assert.equal(pickGemmTile(64, 8 * 64 * 64), GEMM_TILES.t32r8, "t64w cannot fill: t32r8 first");
  assert.equal(pickGemmTile(70, 100), GEMM_TILES.t64, "tiny layers: the tallest plain tile");
  // The forward packs the weights of tap-major reductions past 8 channels (64×128, 32×128 or
  // 16×128 tiles), else splits t64wk16's reduction to fill the GPU; splits stay ≤ 4, ≥ 64 deep.
  const fwd = (mg: number, positions: number, rg: number, taps: number) => {
    const p = pickForwardGemm(mg, positions, 1, rg, taps);
    const name = Object.entries(GEMM_TILES).find(([, t]) => t === p.tile)![0];
    return [name, p.splits, p.packed];
  };
  assert.deepEqual(fwd(64, 8 * 64 * 64, 64, 9), ["t64r8", 1, true], "FC-Siam upT 64");
  assert.deepEqual(fwd(128, 8 * 32 * 32, 128, 9), ["t64r8", 2, true], "FC-Siam upT 128");
  assert.deepEqual(fwd(32, 8 * 128 * 128, 32, 9), ["t32r8", 1, true], "FC-Siam upT 32");
  assert.deepEqual(fwd(64, 100, 64, 9), ["t64r8", 4, true], "few positions: 4 splits");
  assert.deepEqual(fwd(64, 100, 16, 2), ["t64r8", 1, true], "32 deep: no split");
  assert.deepEqual(fwd(64, 8 * 64 * 64, 24, 9), ["t64wk16", 2, false], "24 channels: unpacked");
  assert.deepEqual(fwd(48, 8 * 256 * 256, 3, 9), ["t64w", 1, false], "fills unsplit");
  assert.deepEqual(fwd(64, 8 * 64 * 64, 100, 1), ["t32r8", 1, false], "too shallow to split");
  assert.deepEqual(fwd(64, 100, 8, 72), ["t64", 1, false], "too few positions even split");
  assert.deepEqual(fwd(16, 8 * 256 * 256, 16, 9), ["t16", 1, true], "FC-Siam upT 16");
  assert.deepEqual(fwd(8, 8 * 64 * 64, 16, 9), ["t8", 1, false], "8 channels: unpacked");
  // Weight gradients of 3-channel inputs (27 columns, 28 with a bias): 32×32, 2048 workgroups.
  for (const [mg, cols] of [[48, 27], [16, 28]]) {
    const p = pickWgradTile(mg, cols);
    assert.deepEqual([p.tile.tm, p.tile.tk, p.target], [32, 32, 2048], `${mg}×${cols}`);
  }
  assert.equal(pickWgradTile(64, 576).tile.tm, 64, "many channels and columns: 64×64");
});

Deno.test("the forward router's packed GEMMs: 128→128 stride 2 split 4 ways, 32→40 with bias + ReLU", async () => {
  const cases: [number[], number[], Conv2dOptions, boolean][] = [
    [[1, 128, 7, 9], [128, 128, 3, 3], { stride: 2, padding: 1 }, false],
    [[2, 32, 7, 5], [40, 32, 3, 3], { stride: 2, padding: 1 }, true],
  ];
  for (const [k, [xs, ws, opts, withBias]] of cases.entries()) {
    const g = convGeometry(xs, ws, opts);
    const pick = pickForwardGemm(g.co, g.batch * g.ho * g.wo, 1, g.ci, 9);
    assert.ok(pick.packed && !winogradFits(g), `${xs}→${ws} takes the packed GEMM`);
    const x = randArray(xs.reduce((a, b) => a * b), 90 + k);
    const w = randArray(ws.reduce((a, b) => a * b), 95 + k, -0.5, 0.5);
    const bias = randArray(g.co, 99 + k);
    const ep = withBias ? { ...NO_EPILOGUE, bias: true, activation: "relu" as const } : NO_EPILOGUE;
    const y = scope(() => {
      const extra = withBias ? [tensor(bias, [g.co])] : [];
      return convForwardRaw(g, tensor(x, xs), tensor(w, ws), ep, extra).y;
    });
    const ref = withBias ? convRef(g, x, w, bias, "relu") : convRef(g, x, w);
    assertClose(await y.read(), ref, { what: `${xs}→${ws} splits ${pick.splits}`, atol: 1e-4 });
    y.dispose();
  }
});

Deno.test("Winograd F(2×2, 3×3): forward with bias + ReLU and input gradient, odd shapes, paddings, groups, both tiles", async () => {
  const shapes: [number[], number[], number, number?][] = [
    [[2, 9, 7, 11], [13, 9, 3, 3], 1], // 16-channel tile, odd sizes, one channel slab short
    [[1, 20, 9, 13], [37, 20, 3, 3], 1], // 32-channel tile, two channel tiles, 3 slabs
    [[2, 8, 6, 5], [8, 8, 3, 3], 0], // no padding
    [[1, 11, 5, 7], [9, 11, 3, 3], 2], // padding 2
    [[2, 18, 7, 5], [26, 9, 3, 3], 1, 2], // 2 groups of 9→13: channel tiles per group padded
    [[1, 30, 5, 9], [51, 10, 3, 3], 1, 3], // 3 groups of 10→17: two channel tiles per group
  ];
  for (const [xs, ws, padding, groups = 1] of shapes) {
    const g = convGeometry(xs, ws, { padding, groups });
    assert.ok(winogradFits(g) && winogradFitsDgrad(g), `${xs} ${ws} takes Winograd`);
    const x = randArray(xs.reduce((a, b) => a * b), 31);
    const w = randArray(ws.reduce((a, b) => a * b), 32, -0.5, 0.5);
    const bias = randArray(ws[0], 33);
    const dy = randArray(g.batch * g.co * g.ho * g.wo, 34);
    // The F(2×2) kernel itself: wider convs route to F(4×4) (its own test below).
    const [y, dx] = scope(() => {
      const y = empty([g.batch, g.co, g.ho, g.wo]), dx = empty(xs);
      const ep = { bias: true, activation: "relu" as const, savePre: false };
      const tb = tensor(bias, [ws[0]]);
      runWinograd(forwardWinogradSpec(g, ep), tensor(x, xs), tensor(w, ws), false, [tb], [y]);
      const tdy = tensor(dy, [g.batch, g.co, g.ho, g.wo]);
      runWinograd(dgradWinogradSpec(g, NO_EPILOGUE), tdy, tensor(w, ws), true, [], [dx]);
      return [y, dx];
    });
    const what = `${xs}→${ws} p${padding} g${groups}`;
    assertClose(await y.read(), convRef(g, x, w, bias, "relu"), { what: `${what} y`, atol: 1e-4 });
    assertClose(await dx.read(), dgradRef(g, dy, w), { what: `${what} dx`, atol: 1e-4 });
    y.dispose();
    dx.dispose();
  }
  // The 32-channel tile (not picked, kept for sweeps) on the first two shapes and a grouped one.
  for (const [xs, ws, padding, groups = 1] of [...shapes.slice(0, 2), shapes[5]]) {
    const g = convGeometry(xs, ws, { padding, groups });
    const x = randArray(xs.reduce((a, b) => a * b), 35);
    const w = randArray(ws.reduce((a, b) => a * b), 36, -0.5, 0.5);
    const spec = { ...forwardWinogradSpec(g, NO_EPILOGUE), tm: 32 };
    const y = scope(() => {
      const out = empty([g.batch, g.co, g.ho, g.wo]);
      runWinograd(spec, tensor(x, xs), tensor(w, ws), false, [], [out]);
      return out;
    });
    const what = `tile 32 ${xs}→${ws} g${groups}`;
    assertClose(await y.read(), convRef(g, x, w), { what, atol: 1e-4 });
    y.dispose();
  }
});

Deno.test("Winograd F(4×4, 3×3) around the GEMM: forward with bias, PReLU per channel and its pre-activation, input gradient, odd shapes, paddings, groups, chunks, through the router", async () => {
  // [x, w, padding, groups, images per launch]
  const shapes: [number[], number[], number, number, number][] = [
    [[2, 5, 7, 11], [6, 5, 3, 3], 1, 1, 2], // partial tiles on both edges
    [[3, 4, 9, 6], [7, 4, 3, 3], 0, 1, 1], // no padding, three images one at a time
    [[1, 6, 5, 9], [3, 6, 3, 3], 2, 1, 1], // padding 2 (the input gradient's padding 0)
    [[2, 6, 6, 5], [10, 3, 3, 3], 1, 2, 2], // 2 groups of 3→5
    [[1, 9, 8, 7], [6, 3, 3, 3], 1, 3, 1], // 3 groups of 3→2
  ];
  for (const [xs, ws, padding, groups, images] of shapes) {
    const g = convGeometry(xs, ws, { padding, groups });
    const x = randArray(xs.reduce((a, b) => a * b), 61);
    const w = randArray(ws.reduce((a, b) => a * b), 62, -0.5, 0.5);
    const bias = randArray(g.co, 63);
    const slopes = randArray(g.co, 64, 0.05, 0.3);
    const dy = randArray(g.batch * g.co * g.ho * g.wo, 65);
    const ep = { bias: true, activation: "prelu" as const, savePre: true, slopes: g.co };
    const [y, pre, dx] = scope(() => {
      const y = empty([g.batch, g.co, g.ho, g.wo]), pre = empty(y.shape);
      const extra = [tensor(bias, [g.co]), tensor(slopes, [g.co])];
      runWinograd4(g, tensor(x, xs), tensor(w, ws), false, ep, extra, [y, pre], images);
      const dx = empty(xs);
      const tdy = tensor(dy, [g.batch, g.co, g.ho, g.wo]);
      runWinograd4(g, tdy, tensor(w, ws), true, NO_EPILOGUE, [], [dx], images);
      return [y, pre, dx];
    });
    const what = `${xs}→${ws} p${padding} g${groups} images ${images}`;
    const ref = convRef(g, x, w, bias, "prelu", slopes);
    assertClose(await y.read(), ref, { what: `${what} y`, atol: 1e-4, rtol: 1e-4 });
    const preRef = convRef(g, x, w, bias);
    assertClose(await pre.read(), preRef, { what: `${what} pre`, atol: 1e-4, rtol: 1e-4 });
    assertClose(await dx.read(), dgradRef(g, dy, w), { what: `${what} dx`, atol: 1e-4 });
    for (const t of [y, pre, dx]) t.dispose();
  }
  // Wide enough for the router: conv2d's forward and input gradient take F(4×4), 2 groups.
  const xs = [1, 128, 6, 7], ws = [130, 64, 3, 3];
  const g = convGeometry(xs, ws, { padding: 1, groups: 2 });
  assert.ok(winograd4Fits(g), "64→65 per group takes F(4×4)");
  assert.equal(planForward(g).kind, "winograd-f4-gemm");
  assert.equal(planDgrad(g).kind, "winograd-f4-gemm-flip");
  const x = randArray(xs.reduce((a, b) => a * b), 66);
  const w = randArray(ws.reduce((a, b) => a * b), 67, -0.1, 0.1);
  const dy = randArray(g.co * g.ho * g.wo, 68);
  const [y, dx] = scope(() => [
    convForwardRaw(g, tensor(x, xs), tensor(w, ws)).y,
    convInputGradRaw(g, tensor(dy, [1, g.co, g.ho, g.wo]), tensor(w, ws)).y,
  ]);
  assertClose(await y.read(), convRef(g, x, w), { what: "router y", atol: 1e-4, rtol: 1e-4 });
  assertClose(await dx.read(), dgradRef(g, dy, w), { what: "router dx", atol: 1e-4, rtol: 1e-4 });
  y.dispose();
  dx.dispose();
});

Deno.test("Winograd F(4×4, 3×3) fused: forward with bias, PReLU and its pre-activation, input gradient, odd shapes, over 64 tiles and 16 channels", async () => {
  // [x, w, padding]: channels not multiples of the slab (2) or the thread's 4 outputs, more output
  // channels than a workgroup's 16, more tiles than its 64, partial tiles on both edges.
  const shapes: [number[], number[], number][] = [
    [[3, 3, 9, 6], [7, 3, 3, 3], 0],
    [[1, 6, 5, 9], [3, 6, 3, 3], 2],
    [[2, 7, 37, 29], [19, 7, 3, 3], 1],
  ];
  for (const [xs, ws, padding] of shapes) {
    const g = convGeometry(xs, ws, { padding });
    const x = randArray(xs.reduce((a, b) => a * b), 71);
    const w = randArray(ws.reduce((a, b) => a * b), 72, -0.5, 0.5);
    const bias = randArray(g.co, 73);
    const slopes = randArray(g.co, 74, 0.05, 0.3);
    const dy = randArray(g.batch * g.co * g.ho * g.wo, 75);
    const ep = { bias: true, activation: "prelu" as const, savePre: true, slopes: g.co };
    const [y, pre, dx] = scope(() => {
      const y = empty([g.batch, g.co, g.ho, g.wo]), pre = empty(y.shape);
      const extra = [tensor(bias, [g.co]), tensor(slopes, [g.co])];
      runWinograd4Fused(g, tensor(x, xs), tensor(w, ws), false, ep, extra, [y, pre]);
      const dx = empty(xs);
      const tdy = tensor(dy, [g.batch, g.co, g.ho, g.wo]);
      runWinograd4Fused(g, tdy, tensor(w, ws), true, NO_EPILOGUE, [], [dx]);
      return [y, pre, dx];
    });
    const what = `fused ${xs}→${ws} p${padding}`;
    assertClose(await y.read(), convRef(g, x, w, bias, "prelu", slopes), {
      what: `${what} y`,
      atol: 1e-4,
      rtol: 1e-4,
    });
    assertClose(await pre.read(), convRef(g, x, w, bias), {
      what: `${what} pre`,
      atol: 1e-4,
      rtol: 1e-4,
    });
    assertClose(await dx.read(), dgradRef(g, dy, w), { what: `${what} dx`, atol: 1e-4 });
    for (const t of [y, pre, dx]) t.dispose();
  }
});

Deno.test("Winograd F(4×4) fused through the router: a profile that allows it routes narrow convs there", async () => {
  // The first test's largest shape: its input-gradient pipeline is already compiled.
  const xs = [2, 7, 37, 29], ws = [19, 7, 3, 3];
  const g = convGeometry(xs, ws, { padding: 1 });
  const allow = { ...activeProfile(), fusedWino4MaxChannels: 32 };
  assert.equal(planForward(g).kind === "winograd-f4-fused", false, "off by default");
  const x = randArray(xs.reduce((a, b) => a * b), 81);
  const w = randArray(ws.reduce((a, b) => a * b), 82, -0.3, 0.3);
  const dy = randArray(g.batch * g.co * g.ho * g.wo, 83);
  const [y, dx] = withProfile(allow, () => {
    assert.equal(planForward(g).kind, "winograd-f4-fused");
    assert.equal(planDgrad(g).kind, "winograd-f4-fused-flip");
    return scope(() => [
      convForwardRaw(g, tensor(x, xs), tensor(w, ws)).y,
      convInputGradRaw(g, tensor(dy, [g.batch, g.co, g.ho, g.wo]), tensor(w, ws)).y,
    ]);
  });
  assertClose(await y.read(), convRef(g, x, w), { what: "fused router y", atol: 1e-4, rtol: 1e-4 });
  assertClose(await dx.read(), dgradRef(g, dy, w), { what: "fused router dx", atol: 1e-4 });
  y.dispose();
  dx.dispose();
});

Deno.test("Winograd F(4×4, 3×3) weight gradient: odd shapes, paddings 0–2, partial tiles, groups, through the op's router", async () => {
  const shapes: [number[], number[], number, number?][] = [
    [[2, 3, 7, 9], [5, 3, 3, 3], 1], // output 7×9: partial tiles on both edges
    [[1, 6, 10, 6], [4, 6, 3, 3], 0], // no padding: output 8×4, whole tiles
    [[2, 5, 5, 11], [7, 5, 3, 3], 2], // padding 2: output 7×13
    [[2, 17, 6, 7], [16, 17, 3, 3], 1], // taken by convWeightGradRaw (≥ 16 channels)
    [[3, 4, 9, 5], [6, 4, 3, 3], 1], // three images in chunks of one (summed GEMM results)
    [[2, 34, 6, 7], [32, 17, 3, 3], 1, 2], // 2 groups of 17→16, taken by convWeightGradRaw
    [[2, 9, 5, 6], [6, 3, 3, 3], 2, 3], // 3 groups of 3→2, padding 2, in chunks of one image
  ];
  for (const [k, [xs, ws, padding, groups = 1]] of shapes.entries()) {
    const g = convGeometry(xs, ws, { padding, groups });
    const x = randArray(xs.reduce((a, b) => a * b), 40 + k);
    const dy = randArray(g.batch * g.co * g.ho * g.wo, 50 + k);
    const viaOp = winogradWgradFits(g);
    assert.equal(viaOp, k === 3 || k === 5, `${xs}→${ws}: router choice`);
    // one image's larger transformed operand (36 elements × channels × tiles × 4 bytes)
    const chunkBytes = k === 4 ? 36 * 6 * 9 * 4 : k === 6 ? 36 * 9 * 6 * 4 : undefined;
    const { dw, db } = scope(() => {
      const [tx, tdy] = [tensor(x, xs), tensor(dy, [g.batch, g.co, g.ho, g.wo])];
      if (viaOp) {
        const r = convWeightGradRaw(g, tx, tdy, true);
        return { dw: r.dw, db: r.db };
      }
      return { dw: winogradWeightGradRaw(g, tx, tdy, chunkBytes), db: null };
    });
    const ref = wgradRef(g, x, dy);
    const what = `${xs}→${ws} p${padding} g${groups}`;
    assertClose(await dw.read(), ref.dw, { what: `${what} dw`, atol: 1e-4, rtol: 1e-4 });
    if (db) assertClose(await db.read(), ref.db, { what: `${what} db`, atol: 1e-4, rtol: 1e-4 });
    dw.dispose();
    db?.dispose();
  }
});

Deno.test("Winograd F(4×4, 3×3) fused weight gradient: odd shapes, paddings 0–2, partial tiles and slabs, splits summed, channel blocks, through the router", async () => {
  // [x, w, padding, tiles per split]: a split's tiles not a multiple of the slab's 4 at the end,
  // more channels than a block's 16 each way, one split holding every tile.
  const shapes: [number[], number[], number, number][] = [
    [[2, 3, 7, 9], [5, 3, 3, 3], 1, 4], // 2 × 2 × 3 = 12 tiles in 3 splits
    [[1, 6, 10, 6], [4, 6, 3, 3], 0, 8], // output 8×4: 2 tiles, one split
    [[2, 5, 5, 11], [7, 5, 3, 3], 2, 4], // output 7×13: 2 × 2 × 4 = 16 tiles in 4 splits
    [[2, 17, 9, 7], [19, 17, 3, 3], 1, 8], // 2 × 3 × 2 = 12 tiles: 8 + 4; 2 × 2 channel blocks
  ];
  for (const [k, [xs, ws, padding, chunk]] of shapes.entries()) {
    const g = convGeometry(xs, ws, { padding });
    const tiles = g.batch * Math.ceil(g.ho / 4) * Math.ceil(g.wo / 4);
    const x = randArray(xs.reduce((a, b) => a * b), 140 + k);
    const dy = randArray(g.batch * g.co * g.ho * g.wo, 150 + k);
    const dw = scope(() =>
      winograd4FusedWeightGradRaw(
        g,
        tensor(x, xs),
        tensor(dy, [g.batch, g.co, g.ho, g.wo]),
        Math.ceil(tiles / chunk),
        chunk,
      )
    );
    const ref = wgradRef(g, x, dy);
    const what = `fused wgrad ${xs}→${ws} p${padding}`;
    assertClose(await dw.read(), ref.dw, { what, atol: 1e-4, rtol: 1e-4 });
    dw.dispose();
  }
  // Through convWeightGradRaw under a profile that allows it, with the bias's gradient.
  const [xs, ws] = shapes[3];
  const g = convGeometry(xs, ws, { padding: 1 });
  const allow = { ...activeProfile(), fusedWino4MaxChannels: 32 };
  assert.notEqual(planWgrad(g, true).kind, "winograd-f4-fused", "off by default");
  const x = randArray(xs.reduce((a, b) => a * b), 160);
  const dy = randArray(g.batch * g.co * g.ho * g.wo, 161);
  const { dw, db } = withProfile(allow, () => {
    const route = planWgrad(g, true);
    assert.deepEqual(route, { kind: "winograd-f4-fused", ...fusedWgradSplits(g) });
    return scope(() => convWeightGradRaw(g, tensor(x, xs), tensor(dy, [2, 19, 9, 7]), true));
  });
  const ref = wgradRef(g, x, dy);
  assertClose(await dw.read(), ref.dw, { what: "fused router dw", atol: 1e-4, rtol: 1e-4 });
  assertClose(await db!.read(), ref.db, { what: "fused router db", atol: 1e-4, rtol: 1e-4 });
  dw.dispose();
  db!.dispose();
});

Deno.test("fused weight gradient's splits: whole slabs, every tile once, about fillWorkgroups workgroups", () => {
  const profile = { ...activeProfile(), fillWorkgroups: 528 };
  // [batch, channels each way, size]: FC-Siam-Diff's 16→16 at 512², 64→64 at 128², a tiny one.
  for (const [batch, c, size] of [[8, 16, 512], [8, 64, 128], [1, 8, 5]]) {
    const g = convGeometry([batch, c, size, size], [c, c, 3, 3], { padding: 1 });
    const tiles = batch * Math.ceil(size / 4) ** 2;
    const { splits, chunk } = fusedWgradSplits(g, profile);
    assert.equal(chunk % 4, 0, "whole slabs");
    assert.ok(splits * chunk >= tiles && (splits - 1) * chunk < tiles, "every tile once");
    const blocks = Math.ceil(c / 16) ** 2;
    assert.ok(splits === 1 || chunk >= 256, `${c}@${size}: at least 256 tiles a workgroup`);
    assert.ok(splits * blocks <= 2 * 528, `${c}@${size}: ${splits} × ${blocks} workgroups`);
  }
});

Deno.test("strided input gradient as GEMM + col2im: strides 2 and (2, 3), dilation, the epilogue and its saved pre-activation", async () => {
  const shapes: [number[], number[], Conv2dOptions][] = [
    [[2, 64, 9, 11], [65, 64, 3, 3], { stride: 2, padding: 1 }], // FC-Siam's up-conv form
    [[1, 66, 13, 14], [64, 66, 3, 2], { stride: [2, 3], padding: [1, 0], dilation: [1, 2] }],
    [[2, 5, 12, 16], [3, 5, 4, 4], { stride: 4 }], // a narrow patch conv (MiT's reduction)
  ];
  for (const [k, [xs, ws, opts]] of shapes.entries()) {
    const g = convGeometry(xs, ws, opts);
    assert.ok(planDgrad(g).kind === "col2im", `${xs}→${ws} takes col2im`);
    const w = randArray(ws.reduce((a, b) => a * b), 60 + k, -0.5, 0.5);
    const dy = randArray(g.batch * g.co * g.ho * g.wo, 70 + k);
    const bias = randArray(g.ci, 80 + k);
    const ref = dgradRef(g, dy, w);
    const hw = g.h * g.w;
    const z = ref.map((v, i) => v + bias[Math.floor(i / hw) % g.ci]);
    const ep = { bias: true, activation: "silu" as const, savePre: true };
    const [plain, y, pre] = scope(() => {
      const [tdy, tw] = [tensor(dy, [g.batch, g.co, g.ho, g.wo]), tensor(w, ws)];
      const plain = convInputGradRaw(g, tdy, tw).y;
      const r = convInputGradRaw(g, tdy, tw, ep, [tensor(bias, [g.ci])]);
      return [plain, r.y, r.pre!];
    });
    const what = `${xs}→${ws}`;
    assertClose(await plain.read(), ref, { what: `${what} dx`, atol: 1e-4 });
    assertClose(await pre.read(), z, { what: `${what} pre`, atol: 1e-4 });
    assertClose(await y.read(), z.map((v) => activationRef("silu", v)), {
      what: `${what} silu`,
      atol: 1e-4,
    });
    for (const t of [plain, y, pre]) t.dispose();
  }
});
