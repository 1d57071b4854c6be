import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import { convTranspose2d, type ConvTranspose2dOptions } from "../../engine/ops/conv_transpose2d.ts";
import { planConv, planDgrad, tapExpandFits } from "../../kernels/conv_plan.ts";
import {
  activeProfile,
  type DeviceProfile,
  H100_PROFILE,
  setActiveProfile,
  withProfile,
} from "../../kernels/device_profile.ts";
import { scope } from "../../engine/scope.ts";
import { backward } from "../../engine/autograd.ts";
import { mul } from "../../engine/ops/elementwise.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { parameter, type Tensor, tensor } from "../../engine/tensor.ts";
import { convTransposeGeometry } from "../../kernels/conv_transpose2d.ts";
import { convGeometry } from "../../kernels/conv2d.ts";
import { conv2d } from "../../engine/ops/conv2d.ts";
import { activationRef, assertClose, gradCheck, randArray } from "../util.ts";

await initDevice();

type Opts = Omit<ConvTranspose2dOptions, "bias" | "preluSlope">;

/** Float64 scatter form: y[b, co, iy·s − p + ky·d, ...] += x[b, ci, iy, ix] · w[ci, co, ky, kx]. */
function convTransposeRef(
  xs: number[],
  ws: number[],
  o: Opts,
  x: Float32Array,
  w: Float32Array,
  bias?: Float32Array,
): { y: Float64Array; shape: number[] } {
  const g = convTransposeGeometry(xs, ws, o);
  const [batch, ci, h, wd] = xs;
  const cog = ws[1], cig = ci / g.groups;
  const co = g.ci, ho = g.h, wo = g.w;
  const y = new Float64Array(batch * co * ho * wo);
  for (let b = 0; b < batch; b++) {
    for (let c = 0; c < ci; c++) {
      const grp = Math.floor(c / cig);
      for (let iy = 0; iy < h; iy++) {
        for (let ix = 0; ix < wd; ix++) {
          const v = x[((b * ci + c) * h + iy) * wd + ix];
          for (let o2 = 0; o2 < cog; o2++) {
            const oc = grp * cog + o2;
            for (let ky = 0; ky < g.kh; ky++) {
              const Y = iy * g.strideY - g.padY + ky * g.dilY;
              if (Y < 0 || Y >= ho) continue;
              for (let kx = 0; kx < g.kw; kx++) {
                const X = ix * g.strideX - g.padX + kx * g.dilX;
                if (X < 0 || X >= wo) continue;
                y[((b * co + oc) * ho + Y) * wo + X] += v *
                  w[((c * cog + o2) * g.kh + ky) * g.kw + kx];
              }
            }
          }
        }
      }
    }
  }
  if (bias) {
    const hw = ho * wo;
    y.forEach((v, i) => (y[i] = v + bias[Math.floor(i / hw) % co]));
  }
  return { y, shape: [batch, co, ho, wo] };
}

interface Case {
  name: string;
  x: number[];
  w: number[];
  opts: Opts;
  bias?: boolean;
}

const cases: Case[] = [
  {
    name: "FC-Siam up k3 s2 p1 op1, 5→6",
    x: [2, 5, 4, 5],
    w: [5, 6, 3, 3],
    opts: { stride: 2, padding: 1, outputPadding: 1 },
    bias: true,
  },
  {
    name: "FC-Siam decoder k3 s1 p1, 5→6 relu",
    x: [2, 5, 7, 9],
    w: [5, 6, 3, 3],
    opts: { padding: 1, activation: "relu" },
    bias: true,
  },
  {
    name: "SNUNet up k2 s2, 3→5",
    x: [2, 3, 4, 5],
    w: [3, 5, 2, 2],
    opts: { stride: 2 },
    bias: true,
  },
  {
    name: "last layer k3 s1 p1, 5→2 (direct)",
    x: [2, 5, 7, 9],
    w: [5, 2, 3, 3],
    opts: { padding: 1 },
    bias: true,
  },
  {
    name: "k3 s2 p1 op1 dilation 2 groups 2, 6→10",
    x: [1, 6, 4, 5],
    w: [6, 5, 3, 3],
    opts: { stride: 2, padding: 1, outputPadding: 1, dilation: 2, groups: 2 },
  },
];

function makeInputs(c: Case, seed: number) {
  return {
    x: randArray(c.x.reduce((a, b) => a * b), seed),
    w: randArray(c.w.reduce((a, b) => a * b), seed + 1, -0.5, 0.5),
    bias: c.bias ? randArray(c.w[1] * (c.opts.groups ?? 1), seed + 2) : undefined,
  };
}

for (const [k, c] of cases.entries()) {
  Deno.test(`convTranspose2d forward ${c.name} matches a float64 reference`, async () => {
    const d = makeInputs(c, 20 * k + 3);
    const ref = convTransposeRef(c.x, c.w, c.opts, d.x, d.w, d.bias);
    const y = scope(() =>
      convTranspose2d(tensor(d.x, c.x), tensor(d.w, c.w), {
        ...c.opts,
        bias: d.bias && tensor(d.bias),
      })
    );
    assert.deepEqual([...y.shape], ref.shape);
    const expect = c.opts.activation === "relu" ? ref.y.map((v) => Math.max(v, 0)) : ref.y;
    assertClose(await y.read(), expect, { what: c.name, atol: 1e-5, rtol: 1e-4 });
    y.dispose();
  });
}

for (const [k, c] of cases.entries()) {
  if (c.opts.activation === "relu") continue; // kink: covered by conv2d's relu backward
  Deno.test(`convTranspose2d gradient ${c.name} matches finite differences`, async () => {
    const d = makeInputs(c, 20 * k + 300);
    const inputs = [{ data: d.x, shape: c.x }, { data: d.w, shape: c.w }];
    if (d.bias) inputs.push({ data: d.bias, shape: [d.bias.length] });
    await gradCheck(
      (...ts: Tensor[]) => convTranspose2d(ts[0], ts[1], { ...c.opts, bias: ts[2] }),
      inputs,
      { maxPoints: 12 },
    );
  });
}

Deno.test("convTranspose2d silu gradient (saved pre-activation) matches finite differences", async () => {
  const c = cases[3];
  const d = makeInputs(c, 77);
  await gradCheck(
    (x, w, b) => convTranspose2d(x, w, { ...c.opts, bias: b, activation: "silu" }),
    [{ data: d.x, shape: c.x }, { data: d.w, shape: c.w }, { data: d.bias!, shape: [2] }],
    { maxPoints: 12 },
  );
});

// Kernel == stride: the GEMM + pixel-shuffle path (taken from 64 channels; lowered here so that
// small odd shapes reach it). Same float64 reference, every epilogue, gradients for x, w, bias.
interface ShuffleCase {
  name: string;
  x: number[];
  w: number[];
  stride: [number, number];
  act?: NonNullable<ConvTranspose2dOptions["activation"]>;
  bias?: boolean;
  slopes?: number;
}

const shuffleCases: ShuffleCase[] = [
  { name: "k2 s2, 3→3 bias", x: [2, 3, 7, 9], w: [3, 3, 2, 2], stride: [2, 2], bias: true },
  { name: "k3 s3, 5→3", x: [2, 5, 7, 9], w: [5, 3, 3, 3], stride: [3, 3] },
  {
    name: "k2 s2, 5→3 bias relu",
    x: [2, 5, 7, 9],
    w: [5, 3, 2, 2],
    stride: [2, 2],
    act: "relu",
    bias: true,
  },
  {
    name: "k(2,3) s(2,3), 3→4 sigmoid",
    x: [2, 3, 7, 9],
    w: [3, 4, 2, 3],
    stride: [2, 3],
    act: "sigmoid",
    bias: true,
  },
  {
    name: "k3 s3, 3→3 silu",
    x: [2, 3, 7, 9],
    w: [3, 3, 3, 3],
    stride: [3, 3],
    act: "silu",
    bias: true,
  },
  {
    name: "k2 s2, 5→3 prelu per channel",
    x: [2, 5, 7, 9],
    w: [5, 3, 2, 2],
    stride: [2, 2],
    act: "prelu",
    bias: true,
    slopes: 3,
  },
];

/** The device profile with the shuffle route from `min` channels (the tests' shapes are small). */
const shuffleFrom = (min: number) => ({ ...activeProfile(), shuffleMinChannels: min });

function withShuffle(fn: () => Promise<void>): Promise<void> {
  return withProfile(shuffleFrom(1), fn);
}

/** The tap-expand route instead (kernels/conv2d_tap_expand.ts: one thread per input pixel and
 * block of output channels; the H100 profile's up to 32 channels), for every channel count; the
 * shuffle route off. */
const tapExpand = () => ({
  ...activeProfile(),
  shuffleMinChannels: 1 << 30,
  tapExpandMaxChannels: 1 << 30,
});

const ROUTES = [
  { name: "GEMM + shuffle", profile: () => shuffleFrom(1) },
  { name: "tap-expand", profile: tapExpand },
];

for (const [k, c] of shuffleCases.entries()) {
  for (const route of ROUTES) {
    const withRoute = (fn: () => Promise<void>) => withProfile(route.profile(), fn);
    const opts: Opts = { stride: c.stride, activation: c.act };
    const data = (seed: number) => ({
      x: randArray(c.x.reduce((a, b) => a * b), seed),
      w: randArray(c.w.reduce((a, b) => a * b), seed + 1, -0.5, 0.5),
      bias: c.bias ? randArray(c.w[1], seed + 2) : undefined,
      slopes: c.slopes ? randArray(c.slopes, seed + 3, 0.1, 0.4) : undefined,
    });
    Deno.test(`convTranspose2d kernel = stride ${c.name}: ${route.name} matches a float64 reference`, () =>
      withRoute(async () => {
        const g = convTransposeGeometry(c.x, c.w, opts);
        const call = {
          op: "convTranspose2d" as const,
          g,
          activation: "none" as const,
          bias: false,
        };
        const kind = planConv({ ...call, recording: false }, "forward").kind;
        assert.equal(kind, route.name === "tap-expand" ? "tap-expand" : "shuffle-gemm");
        const d = data(40 * k + 5);
        const ref = convTransposeRef(c.x, c.w, { stride: c.stride }, d.x, d.w, d.bias);
        const hw = ref.shape[2] * ref.shape[3];
        const expect = ref.y.map((v, i) => {
          const ch = Math.floor(i / hw) % ref.shape[1];
          return activationRef(c.act ?? "none", v, d.slopes ? d.slopes[ch] : 0);
        });
        const y = scope(() =>
          convTranspose2d(tensor(d.x, c.x), tensor(d.w, c.w), {
            ...opts,
            bias: d.bias && tensor(d.bias),
            preluSlope: d.slopes && tensor(d.slopes),
          })
        );
        assert.deepEqual([...y.shape], ref.shape);
        assertClose(await y.read(), expect, { what: c.name, atol: 1e-5, rtol: 1e-4 });
        y.dispose();
      }));
    if (c.act === "relu") continue; // kink: the relu gradient is the same helper as conv2d's
    Deno.test(`convTranspose2d kernel = stride ${c.name}: ${route.name} gradients match finite differences`, () =>
      withRoute(async () => {
        const d = data(40 * k + 500);
        if (d.slopes) {
          // PReLU's kink: pre-activations kept away from zero (small weights, bias ±2).
          d.w = d.w.map((v) => v * 0.2);
          d.bias = d.bias!.map((_, ch) => (ch % 2 ? 2 : -2));
        }
        const inputs = [{ data: d.x, shape: c.x }, { data: d.w, shape: c.w }];
        if (d.bias) inputs.push({ data: d.bias, shape: [d.bias.length] });
        if (d.slopes) inputs.push({ data: d.slopes, shape: [d.slopes.length] });
        await gradCheck(
          (...ts: Tensor[]) =>
            convTranspose2d(ts[0], ts[1], {
              ...opts,
              bias: d.bias ? ts[2] : undefined,
              preluSlope: d.slopes ? ts[3] : undefined,
            }),
          inputs,
          { maxPoints: 12 },
        );
      }));
  }
}

Deno.test("convTranspose2d kernel = stride: relu gradients equal the general path's", () =>
  withShuffle(async () => {
    const c = shuffleCases[2];
    const d = {
      x: randArray(c.x.reduce((a, b) => a * b), 91),
      w: randArray(c.w.reduce((a, b) => a * b), 92, -0.5, 0.5),
      b: randArray(c.w[1], 93),
    };
    const grads = async (min: number) => {
      setActiveProfile(shuffleFrom(min)); // withShuffle restores the profile
      const x = parameter(d.x, c.x), w = parameter(d.w, c.w), b = parameter(d.b, [c.w[1]]);
      scope(() => {
        const y = convTranspose2d(x, w, { stride: c.stride, bias: b, activation: "relu" });
        backward(sum(mul(y, y)));
      });
      const out = [await x.grad!.read(), await w.grad!.read(), await b.grad!.read()];
      for (const t of [x, w, b]) t.dispose();
      return out;
    };
    const shuffled = await grads(1);
    const general = await grads(1 << 30);
    for (const [i, what] of ["x", "w", "bias"].entries()) {
      assertClose(shuffled[i], general[i], { what: `d${what}`, atol: 1e-4, rtol: 1e-4 });
    }
  }));

Deno.test("conv2d patch conv k(2,3) s(2,3): its input gradient on the tap-expand route equals the default route's", async () => {
  const xs = [2, 3, 6, 9], ws = [4, 3, 2, 3];
  const g = convGeometry(xs, ws, { stride: [2, 3] });
  const dx = (profile: DeviceProfile) =>
    withProfile(profile, async () => {
      const x = parameter(randArray(2 * 3 * 6 * 9, 71), xs);
      const w = tensor(randArray(4 * 3 * 2 * 3, 72, -0.5, 0.5), ws);
      const route = planDgrad(g).kind;
      scope(() => backward(sum(mul(conv2d(x, w, { stride: [2, 3] }), tensor(up, [2, 4, 3, 3])))));
      const out = { route, dx: await x.grad!.read() };
      x.dispose();
      w.dispose();
      return out;
    });
  const up = randArray(2 * 4 * 3 * 3, 73);
  const tap = await dx(tapExpand()), other = await dx(activeProfile());
  assert.equal(tap.route, "tap-expand");
  assert.notEqual(other.route, "tap-expand");
  assertClose(tap.dx, other.dx, { what: "dx", atol: 1e-6, rtol: 1e-5 });
});

Deno.test("tap-expand takes patch convs above 1×1 within the profile's channels, never a 1×1", () => {
  const p = { ...H100_PROFILE, tapExpandMaxChannels: 32 };
  const fits = (ci: number, co: number, k: number) =>
    tapExpandFits(convGeometry([8, ci, 64, 64], [co, ci, k, k], { stride: k }), p);
  assert.ok(fits(32, 32, 2), "SNUNet's 32-channel k2 s2 up-conv");
  assert.ok(!fits(64, 32, 2), "over the channel cap");
  assert.ok(!fits(16, 16, 1), "a 1×1 conv's input gradient stays one GEMM");
  assert.ok(
    !tapExpandFits(convGeometry([8, 32, 64, 64], [32, 32, 2, 2], { stride: 2 }), {
      ...p,
      tapExpandMaxChannels: 0,
    }),
    "0: off",
  );
});

Deno.test("convTranspose2d rejects bad output padding and weight shapes", () => {
  assert.throws(
    () => convTransposeGeometry([1, 4, 5, 5], [4, 2, 3, 3], { stride: 2, outputPadding: 2 }),
    /outputPadding/,
  );
  assert.throws(() => convTransposeGeometry([1, 4, 5, 5], [3, 2, 3, 3]), /weight/);
});
