// Half-precision storage at inference (engine/precision.ts): the matmul kernel's f16 operands and
// results, the Winograd F(4×4) transforms storing V and P as f16, and conv2d / convTranspose2d
// under halfInference against float64 references. Products and sums stay f32; the matmul kernel
// rounds only its f16 operands and result. Through F(4×4)'s transforms (Bᵀ rows sum to 10 in
// magnitude, Aᵀ's to 19) one rounding of V and P to f16's 11 bits becomes, measured here on the
// software adapter, an rms error of 3.1–3.2e-3 of the output's rms (V alone 2.2e-3; f32 1e-6;
// TF32 convolutions keep operands at the same 11 bits without the transforms) and a largest
// error of 0.8–1.0 % of max|y|. The tests hold it to rms 6e-3 and max 2.5e-2: far from a wrong
// index or a missing tile (errors of the output's own size), and the half path must show.
import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import { gemm } from "../../engine/ops/matmul.ts";
import { conv2d } from "../../engine/ops/conv2d.ts";
import { convTranspose2d } from "../../engine/ops/conv_transpose2d.ts";
import { conv2dConcat } from "../../engine/ops/conv2d_concat.ts";
import { halfAvailable, halfInference, halfStorage } from "../../engine/precision.ts";
import { isGradEnabled } from "../../engine/autograd.ts";
import { scope } from "../../engine/scope.ts";
import { parameter, tensor } from "../../engine/tensor.ts";
import { convGeometry } from "../../kernels/conv2d.ts";
import { planForward } from "../../kernels/conv_plan.ts";
import { activeProfile, withProfile } from "../../kernels/device_profile.ts";
import { TILE_LARGE } from "../../kernels/matmul.ts";
import { convRef } from "./conv_ref.ts";
import { assertClose, randArray } from "../util.ts";

await initDevice();
const skip = !halfAvailable();
if (skip) console.error("half_storage_test: the adapter has no shader-f16; skipped");

const f16 = (a: Float32Array) => Float32Array.from(new Float16Array(a));
const maxAbs = (a: ArrayLike<number>) =>
  Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/** The half path's error against `ref`: rms of the difference over rms of ref, and the largest
 * difference over max|ref|, each within its bound; and not bit-equal to the f32 path. */
function assertHalfClose(
  half: ArrayLike<number>,
  full: ArrayLike<number>,
  ref: ArrayLike<number>,
  what: string,
  /** F(6×6)'s larger transform coefficients about double F(4×4)'s f16 rounding. */
  scale = 1,
) {
  let se = 0, sr = 0, worst = 0, differ = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = half[i] - ref[i];
    se += e * e;
    sr += ref[i] * ref[i];
    worst = Math.max(worst, Math.abs(e));
    if (half[i] !== full[i]) differ++;
  }
  const rms = Math.sqrt(se / sr), max = worst / maxAbs(ref);
  assert.ok(rms < 6e-3 * scale, `${what}: rms error ${rms.toExponential(2)} of the output's rms`);
  assert.ok(max < 2.5e-2 * scale, `${what}: largest error ${max.toExponential(2)} of max|y|`);
  assert.ok(differ > 0, `${what}: the half path ran (its rounding shows)`);
}

/** C[b] = A[b]·B[b] in float64 over the given (already rounded) operands, A [b, m, k], B [b, k, n]. */
function product(a: Float32Array, b: Float32Array, batch: number, m: number, k: number, n: number) {
  const c = new Float64Array(batch * m * n);
  for (let z = 0; z < batch; z++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += a[(z * m + i) * k + p] * b[(z * k + p) * n + j];
        c[(z * m + i) * n + j] = s;
      }
    }
  }
  return c;
}

Deno.test({
  name: "matmul with f16 operands and an f16 or f32 result, odd shapes, tiles and a split",
  ignore: skip,
  fn: async () => {
    for (
      const [batch, m, k, n, tile, split] of [
        [3, 13, 37, 21, undefined, undefined], // scalar loads and stores, planner's tile
        [2, 16, 64, 36, undefined, undefined], // vec4 loads and stores
        [1, 19, 130, 17, { ...TILE_LARGE, bm: 16, bn: 16, tm: 4, tn: 4 }, 5], // split sums
      ] as const
    ) {
      const a = randArray(batch * m * k, 1 + m), b = randArray(batch * k * n, 2 + n);
      const [ah, bh] = [f16(a), f16(b)];
      const ref = product(ah, bh, batch, m, k, n);
      for (const outDtype of ["f32", "f16"] as const) {
        const out = scope(() =>
          gemm(tensor(a, [batch, m, k], "f16"), tensor(b, [batch, k, n], "f16"), {
            outDtype,
            ...(tile ? { tile, split } : {}),
          })
        );
        assert.equal(out.dtype, outDtype);
        const got = await out.read();
        const what = `${batch}×${m}×${k}×${n} → ${outDtype}${split ? ` split ${split}` : ""}`;
        // f32 out: only f32 summation error; f16 out: one rounding of each result.
        const rtol = outDtype === "f16" ? 1e-3 : 1e-5;
        assertClose(got, ref, { what, atol: 1e-5 * k, rtol });
        out.dispose();
      }
    }
    // Mixed: f16 A against f32 B (the weight gradient's V against dy's transform).
    const a = randArray(2 * 9 * 33, 5), b = randArray(2 * 33 * 11, 6);
    const out = scope(() => gemm(tensor(a, [2, 9, 33], "f16"), tensor(b, [2, 33, 11])));
    assertClose(await out.read(), product(f16(a), b, 2, 9, 33, 11), { what: "mixed", atol: 1e-4 });
    out.dispose();
  },
});

Deno.test({
  name:
    "conv2d on Winograd F(4×4) under halfInference: V and P in f16, within f16 rounding of the float64 reference",
  ignore: skip,
  fn: async () => {
    // Odd sizes (partial tiles on both edges), channels the router sends to F(4×4) around the GEMM.
    for (const [xs, ws] of [[[2, 17, 13, 11], [19, 17, 3, 3]], [[1, 32, 20, 9], [16, 32, 3, 3]]]) {
      const g = convGeometry(xs, ws, { padding: 1 });
      assert.equal(planForward(g).kind, "winograd-f4-gemm", `${xs}→${ws} takes F(4×4)`);
      const x = randArray(xs.reduce((p, d) => p * d), 11);
      const w = randArray(ws.reduce((p, d) => p * d), 12, -0.2, 0.2);
      const bias = randArray(ws[0], 13);
      const ref = convRef(g, x, w, bias, "relu");
      const run = (half: boolean) =>
        scope(() => {
          const go = () =>
            conv2d(tensor(x, xs), tensor(w, ws), {
              padding: 1,
              bias: tensor(bias, [ws[0]]),
              activation: "relu",
            });
          return half ? halfInference(go) : go();
        });
      const [full, half] = [run(false), run(true)];
      const [yf, yh] = [await full.read(), await half.read()];
      assertClose(yf, ref, { what: `${xs} f32`, atol: 1e-4 * maxAbs(ref), rtol: 1e-4 });
      assertHalfClose(yh, yf, ref, `${xs}→${ws} half`);
      full.dispose();
      half.dispose();
    }
  },
});

Deno.test({
  name:
    "conv2d on Winograd F(6×6) under halfInference (a profile that allows it): 64-element V and P in f16, within twice F(4×4)'s f16 bound of the float64 reference",
  ignore: skip,
  fn: async () => {
    const xs = [2, 17, 12, 17], ws = [19, 17, 3, 3]; // 12×17: partial 6×6 tiles along x
    const g = convGeometry(xs, ws, { padding: 1 });
    const x = randArray(xs.reduce((p, d) => p * d), 31);
    const w = randArray(ws.reduce((p, d) => p * d), 32, -0.2, 0.2);
    const ref = convRef(g, x, w);
    const [full, half] = withProfile({ ...activeProfile(), winograd6: true }, () => {
      assert.equal(planForward(g).kind, "winograd-f6-gemm", `${xs}→${ws} takes F(6×6)`);
      const go = () => conv2d(tensor(x, xs), tensor(w, ws), { padding: 1 });
      return [scope(go), scope(() => halfInference(go))];
    });
    const yf = await full.read();
    assertClose(yf, ref, { what: "F(6×6) f32", atol: 1e-4 * maxAbs(ref), rtol: 1e-4 });
    // 6.1e-3 rms here, over F(4×4)'s bound of 6e-3 (bench/results/half_agreement_s19.md: ~3e-3).
    assertHalfClose(await half.read(), yf, ref, "F(6×6) half", 2);
    full.dispose();
    half.dispose();
  },
});

Deno.test({
  name:
    "convTranspose2d (the flipped Winograd route) under halfInference matches its f32 result within f16 rounding",
  ignore: skip,
  fn: async () => {
    const xs = [2, 24, 7, 9], ws = [24, 20, 3, 3]; // [Ci, Co, 3, 3], stride 1
    const x = randArray(xs.reduce((p, d) => p * d), 21);
    const w = randArray(ws.reduce((p, d) => p * d), 22, -0.2, 0.2);
    const go = () => convTranspose2d(tensor(x, xs), tensor(w, ws), { padding: 1 });
    const full = scope(go), half = scope(() => halfInference(go));
    const yf = await full.read();
    assertHalfClose(await half.read(), yf, yf, "convT");
    full.dispose();
    half.dispose();
  },
});

Deno.test({
  name:
    "conv2dConcat (its parts transformed into one f16 V) under halfInference, against the float64 reference of the concatenation",
  ignore: skip,
  fn: async () => {
    // Parts of 7 and 13 channels (SNUNet's dense skips are read this way): 20 → 18 on F(4×4).
    const shapes = [[2, 7, 11, 10], [2, 13, 11, 10]], ws = [18, 20, 3, 3];
    const xs = [2, 20, 11, 10];
    const g = convGeometry(xs, ws, { padding: 1 });
    assert.equal(planForward(g).kind, "winograd-f4-gemm");
    const parts = shapes.map((sh, i) => randArray(sh.reduce((p, d) => p * d), 41 + i));
    const w = randArray(ws.reduce((p, d) => p * d), 43, -0.2, 0.2);
    // The concatenation along channels, image by image, for the reference.
    const x = new Float32Array(xs.reduce((p, d) => p * d));
    const plane = 11 * 10;
    for (let n = 0; n < 2; n++) {
      x.set(parts[0].subarray(n * 7 * plane, (n + 1) * 7 * plane), n * 20 * plane);
      x.set(parts[1].subarray(n * 13 * plane, (n + 1) * 13 * plane), (n * 20 + 7) * plane);
    }
    const ref = convRef(g, x, w);
    const go = () =>
      conv2dConcat(parts.map((d, i) => tensor(d, shapes[i])), tensor(w, ws), { padding: 1 });
    const full = scope(go), half = scope(() => halfInference(go));
    const yf = await full.read();
    assertClose(yf, ref, { what: "concat f32", atol: 1e-4 * maxAbs(ref), rtol: 1e-4 });
    assertHalfClose(await half.read(), yf, ref, "concat half");
    full.dispose();
    half.dispose();
  },
});

Deno.test({
  name: "halfInference: no tape inside, the switch restored after a throw, promises refused",
  ignore: skip,
  fn: () => {
    const p = parameter(randArray(4, 31), [4]);
    halfInference(() => {
      assert.ok(halfStorage());
      assert.ok(!isGradEnabled(), "no tape under halfInference");
    });
    assert.ok(!halfStorage());
    assert.throws(() =>
      halfInference(() => {
        throw new Error("inside");
      }), /inside/);
    assert.ok(!halfStorage(), "restored after a throw");
    assert.throws(() => halfInference(() => Promise.resolve(1)), /synchronously/);
    assert.ok(!halfStorage());
    p.dispose();
  },
});
