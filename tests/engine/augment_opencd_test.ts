// Open-CD's extra augmentation on the GPU (any-angle rotation as mmcv.imrotate, the A/B
// exchange) against a float64 CPU reference, and the parameter draws of Changer's pipeline.

import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import { AUG_PARAMS, augmentBatch } from "../../engine/ops/augment.ts";
import { Random } from "../../engine/random.ts";
import { scope } from "../../engine/scope.ts";
import { tensor } from "../../engine/tensor.ts";
import { augmentParams, DEFAULT_AUGMENT } from "../../data/augment.ts";
import { assertClose, randArray } from "../util.ts";

await initDevice();

const S = 7;
const ID = { mean: [0, 0, 0] as const, std: [1, 1, 1] as const };

/** mmcv.imrotate's source position (row, col) of output (y, x): cv2.getRotationMatrix2D about
 * ((S−1)/2, (S−1)/2) with angle −deg, inverted (cv2.warpAffine maps output to source). */
function rotSource(deg: number, y: number, x: number): [number, number] {
  const c = (S - 1) / 2, a = (-deg * Math.PI) / 180;
  const [al, be] = [Math.cos(a), Math.sin(a)];
  // Forward matrix M = [[α, β, (1−α)c − βc], [−β, α, βc + (1−α)c]]; source = M⁻¹·(x, y).
  const dx = x - c, dy = y - c;
  return [c + be * dx + al * dy, c + al * dx - be * dy];
}

function bilinear(raw: Float32Array, p: number, ch: number, r: number, c: number): number {
  const at = (y: number, x: number) =>
    y < 0 || x < 0 || y >= S || x >= S ? 0 : raw[((p * 3 + ch) * S + y) * S + x];
  const y0 = Math.floor(r), x0 = Math.floor(c), wy = r - y0, wx = c - x0;
  return (1 - wy) * ((1 - wx) * at(y0, x0) + wx * at(y0, x0 + 1)) +
    wy * ((1 - wx) * at(y0 + 1, x0) + wx * at(y0 + 1, x0 + 1));
}

async function runAug(
  params: Float32Array,
  b: number,
  rawA: Float32Array,
  rawB: Float32Array,
  lab: Uint32Array,
) {
  const out = scope(() =>
    augmentBatch(
      tensor(rawA, [b, 3, S, S]),
      tensor(rawB, [b, 3, S, S]),
      tensor(lab, [b, S, S], "u32"),
      tensor(params, [b, AUG_PARAMS]),
      ID,
    )
  );
  const r = { a: await out.a.read(), b: await out.b.read(), label: await out.label.read() };
  for (const t of Object.values(out)) t.dispose();
  return r;
}

Deno.test("any-angle rotation, flips and A/B exchange match a float64 reference", async () => {
  const B = 3;
  const rawA = randArray(B * 3 * S * S, 3, 0, 1), rawB = randArray(B * 3 * S * S, 4, 0, 1);
  const lab = Uint32Array.from({ length: B * S * S }, (_, i) => (i * 31) % 5 === 0 ? 1 : 0);
  // [k, flip x, flip y, photometric A, photometric B (identity), degrees, swap]
  const geo = [[0, 1, 0, 17.3, 0], [0, 0, 1, -13.7, 1], [1, 0, 0, 0, 1]];
  const params = new Float32Array(B * AUG_PARAMS);
  geo.forEach(([k, fx, fy, deg, swap], p) => {
    params.set([k, fx, fy, 0, 1, 1, 0, 1, 1, deg, swap], p * AUG_PARAMS);
  });
  const got = await runAug(params, B, rawA, rawB, lab);
  const ea: number[] = [], eb: number[] = [], el: number[] = [];
  for (let p = 0; p < B; p++) {
    const [k, fx, fy, deg, swap] = geo[p];
    const [srcA, srcB] = swap ? [rawB, rawA] : [rawA, rawB];
    const pa: number[][] = [[], [], []], pb: number[][] = [[], [], []];
    for (let y = 0; y < S; y++) {
      for (let x = 0; x < S; x++) {
        const yy = fy ? S - 1 - y : y, xx = fx ? S - 1 - x : x;
        let r: number, c: number;
        if (deg !== 0) [r, c] = rotSource(deg, yy, xx);
        else {
          [r, c] = [yy, xx];
          for (let t = 0; t < k; t++) [r, c] = [c, S - 1 - r];
        }
        for (let ch = 0; ch < 3; ch++) {
          pa[ch].push(Math.min(1, Math.max(0, bilinear(srcA, p, ch, r, c))));
          pb[ch].push(Math.min(1, Math.max(0, bilinear(srcB, p, ch, r, c))));
        }
        // Nearest: keep clear of a rounding boundary so f32 and f64 agree.
        for (const v of [r, c]) assert.ok(Math.abs(v - Math.floor(v) - 0.5) > 1e-3, `${v}`);
        const [nr, nc] = [Math.floor(r + 0.5), Math.floor(c + 0.5)];
        el.push(nr < 0 || nc < 0 || nr >= S || nc >= S ? 255 : lab[(p * S + nr) * S + nc]);
      }
    }
    ea.push(...pa.flat());
    eb.push(...pb.flat());
  }
  assertClose(got.a, ea, { atol: 2e-5, what: "A" });
  assertClose(got.b, eb, { atol: 2e-5, what: "B" });
  assert.deepEqual(Array.from(got.label), el);
  assert.ok(el.includes(255), "the rotated corners are ignored (255)");
});

Deno.test("positive degrees turn clockwise, as mmcv.imrotate", async () => {
  const rawA = randArray(3 * S * S, 8, 0, 1);
  const lab = Uint32Array.from({ length: S * S }, (_, i) => i % 3 === 0 ? 1 : 0);
  const params = new Float32Array(AUG_PARAMS);
  params.set([0, 0, 0, 0, 1, 1, 0, 1, 1, 90, 0]);
  const got = await runAug(params, 1, rawA, rawA, lab);
  // Clockwise quarter turn: out[i][j] = in[S−1−j][i] (torch.rot90(x, −1)).
  const ea: number[] = [], el: number[] = [];
  for (let ch = 0; ch < 3; ch++) {
    for (let i = 0; i < S; i++) {
      for (let j = 0; j < S; j++) ea.push(rawA[(ch * S + S - 1 - j) * S + i]);
    }
  }
  for (let i = 0; i < S; i++) for (let j = 0; j < S; j++) el.push(lab[(S - 1 - j) * S + i]);
  assertClose(got.a, ea, { atol: 1e-5, what: "A turned 90° clockwise" });
  assert.deepEqual(Array.from(got.label), el);
});

/** The draws of augmentParams before the Open-CD options existed (resumed runs rely on them). */
function legacyParams(batch: number, seed: number, step: number): Float32Array {
  const rng = new Random((Math.imul(seed + 1, 0x9e3779b1) ^ Math.imul(step + 1, 0x85ebca77)) >>> 0);
  const p = new Float32Array(batch * AUG_PARAMS);
  const coin = () => rng.next() < 0.5;
  for (let i = 0; i < batch; i++) {
    const q = i * AUG_PARAMS;
    p[q] = rng.int(4);
    p[q + 1] = coin() ? 1 : 0;
    p[q + 2] = coin() ? 1 : 0;
    for (const off of [3, 6]) {
      p[q + off] = coin() ? (rng.next() * 2 - 1) * (32 / 255) : 0;
      p[q + off + 1] = coin() ? 0.5 + rng.next() : 1;
      p[q + off + 2] = coin() ? 0.5 + rng.next() : 1;
    }
  }
  return p;
}

Deno.test("default augmentation draws what it drew before the Open-CD options", () => {
  for (const [seed, step] of [[0, 0], [3, 17], [1, 999]]) {
    assert.deepEqual(augmentParams(8, seed, step), legacyParams(8, seed, step));
  }
});

Deno.test("Changer's RotFlip + exchange draws: frequencies, ranges, (seed, step) determinism", () => {
  const o = {
    ...DEFAULT_AUGMENT,
    rotateProb: 0.5,
    rotateDegrees: 20,
    rotFlipProb: 0.5,
    swapProb: 0.5,
  };
  assert.deepEqual(augmentParams(8, 2, 5, o), augmentParams(8, 2, 5, o));
  assert.notDeepEqual(augmentParams(8, 2, 5, o), augmentParams(8, 2, 6, o));
  const n = 4000;
  const p = augmentParams(n, 1, 3, o);
  let rotated = 0, rotFlipped = 0, swapped = 0;
  const turns = [0, 0, 0, 0];
  for (let i = 0; i < n; i++) {
    const [k, fx, fy] = p.slice(i * AUG_PARAMS, i * AUG_PARAMS + 3);
    const deg = p[i * AUG_PARAMS + 9];
    swapped += p[i * AUG_PARAMS + 10];
    if (deg !== 0) {
      rotated++;
      assert.ok(Math.abs(deg) <= 20);
      assert.ok(k === 0 && fx === 0 && fy === 0, "no rot-flip after a rotation");
    } else if (fx + fy > 0) {
      rotFlipped++;
      assert.equal(fx + fy, 1, "RotFlip always flips along exactly one axis");
      turns[k]++;
    } else assert.equal(k, 0);
  }
  const near = (x: number, e: number, what: string) =>
    assert.ok(Math.abs(x - e) < 4 * Math.sqrt(e), `${what}: ${x}, expected about ${e}`);
  near(rotated, n / 2, "rotated");
  near(rotFlipped, n / 4, "rot-flipped");
  near(swapped, n / 2, "swapped");
  for (const t of turns) near(t, n / 16, "quarter turns");
  // The standard Open-CD pipeline: rotation (±180) replaces the quarter turn, flips stay.
  const std = augmentParams(n, 1, 3, { ...DEFAULT_AUGMENT, rotateProb: 0.5, rotateDegrees: 180 });
  let flips = 0;
  for (let i = 0; i < n; i++) {
    assert.equal(std[i * AUG_PARAMS], 0);
    flips += std[i * AUG_PARAMS + 1];
  }
  near(flips, n / 2, "horizontal flips");
  assert.throws(() => augmentParams(1, 0, 0, { ...o, rotateDegrees: undefined }), /rotateDegrees/);
  assert.throws(() => augmentParams(1, 0, 0, { ...o, swapProb: 2 }), /swapProb/);
});
