import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import { AUG_PARAMS, augmentBatch } from "../../engine/ops/augment.ts";
import { scope } from "../../engine/scope.ts";
import { tensor } from "../../engine/tensor.ts";
import { augmentParams } from "../../data/augment.ts";
import { assertClose, randArray } from "../util.ts";

await initDevice();

const S = 5, B = 4;
const norm = { mean: [0.4, 0.5, 0.6] as const, std: [0.2, 0.25, 0.3] as const };

/** Reference: rotate (torch.rot90 k, dims (H, W)), then flip x, then flip y; returns the source
 * (row, col) of output (y, x). */
function refSource(k: number, fx: boolean, fy: boolean, y: number, x: number): [number, number] {
  if (fy) y = S - 1 - y;
  if (fx) x = S - 1 - x;
  // rot90 by k: out[i][j] = in[j][S-1-i] for k = 1, applied k times
  let [r, c] = [y, x];
  for (let t = 0; t < k; t++) [r, c] = [c, S - 1 - r];
  return [r, c];
}

Deno.test("GPU augmentation matches a CPU reference for every rotation and flip", async () => {
  const rawA = randArray(B * 3 * S * S, 1, 0, 1);
  const rawB = randArray(B * 3 * S * S, 2, 0, 1);
  const label = Uint32Array.from({ length: B * S * S }, (_, i) => (i * 7919) % 3 === 0 ? 1 : 0);
  const params = new Float32Array(B * AUG_PARAMS);
  const geo = [[0, 0, 0], [1, 1, 0], [2, 0, 1], [3, 1, 1]];
  for (let p = 0; p < B; p++) {
    params.set(geo[p], p * AUG_PARAMS);
    params.set([0.05 * p, 1 + 0.1 * p, 1 - 0.2 * p], p * AUG_PARAMS + 3);
    params.set([-0.03, 0.8, 1.3], p * AUG_PARAMS + 6);
  }
  const out = scope(() =>
    augmentBatch(
      tensor(rawA, [B, 3, S, S]),
      tensor(rawB, [B, 3, S, S]),
      tensor(label, [B, S, S], "u32"),
      tensor(params, [B, AUG_PARAMS]),
      norm,
    )
  );
  const ea: number[] = [], eb: number[] = [], el: number[] = [];
  const photo = (raw: Float32Array, p: number, off: number, sr: number, sc: number) => {
    const [bri, con, sat] = params.slice(p * AUG_PARAMS + off, p * AUG_PARAMS + off + 3);
    const rgb = [0, 1, 2].map((c) => (raw[((p * 3 + c) * S + sr) * S + sc] + bri) * con);
    const grey = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
    return rgb.map((v, c) =>
      (Math.min(1, Math.max(0, grey + (v - grey) * sat)) - norm.mean[c]) / norm.std[c]
    );
  };
  for (let p = 0; p < B; p++) {
    const [k, fx, fy] = geo[p];
    const pa: number[][] = [[], [], []], pb: number[][] = [[], [], []];
    for (let y = 0; y < S; y++) {
      for (let x = 0; x < S; x++) {
        const [sr, sc] = refSource(k, !!fx, !!fy, y, x);
        photo(rawA, p, 3, sr, sc).forEach((v, c) => pa[c].push(v));
        photo(rawB, p, 6, sr, sc).forEach((v, c) => pb[c].push(v));
        el.push(label[(p * S + sr) * S + sc]);
      }
    }
    ea.push(...pa.flat());
    eb.push(...pb.flat());
  }
  assertClose(await out.a.read(), ea, { atol: 1e-5, what: "A" });
  assertClose(await out.b.read(), eb, { atol: 1e-5, what: "B" });
  assert.deepEqual(Array.from(await out.label.read()), el);
  for (const t of Object.values(out)) t.dispose();
});

Deno.test("augmentation parameters depend only on (seed, step)", () => {
  assert.deepEqual(augmentParams(8, 3, 17), augmentParams(8, 3, 17));
  assert.notDeepEqual(augmentParams(8, 3, 17), augmentParams(8, 3, 18));
  const p = augmentParams(64, 1, 0);
  for (let i = 0; i < 64; i++) assert.ok([0, 1, 2, 3].includes(p[i * AUG_PARAMS]));
});
