// Parity harness for the Open-CD transformer detectors (BIT, ChangeFormer, ChangerEx): seeded
// weights under Open-CD's names and the upstream code's logits, intermediate features, loss and
// every parameter's gradient (../shared/fixtures/README.md, "Open-CD transformer detectors").
// One harness so the three models are held to the same rules: every reference feature must be
// tapped, every parameter must have a reference gradient, and nothing is compared loosely.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { backward, noGrad } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { loadCheckpoint } from "../../engine/nn/checkpoint.ts";
import { cdLoss } from "../../engine/ops/cd_loss.ts";
import { readSafetensors } from "../../engine/safetensors.ts";
import { scope } from "../../engine/scope.ts";
import { type Tensor, tensor } from "../../engine/tensor.ts";
import { listSplit } from "../../data/dataset.ts";
import { IMAGENET } from "../../data/loader.ts";
import { loadSample } from "../../data/sample.ts";
import type { ChangeDetector } from "../../models/model.ts";

export const FIX = new URL("../../../shared/fixtures/", import.meta.url).pathname;

/** Whether `weights/<file>.safetensors` exists; logs why the tests skip when not. */
export function fixturePresent(file: string): boolean {
  const ok = existsSync(`${FIX}weights/${file}.safetensors`);
  if (!ok) console.log(`skipping ${file} parity: ${FIX} is absent (it ships beside the repo)`);
  return ok;
}

/** Reference key of a tapped tensor: tap "feat.s1" on pair NAME → "feat.NAME.s1". */
function refKey(tap: string, pair: string): string {
  const dot = tap.indexOf(".");
  return dot < 0 ? `${tap}.${pair}` : `${tap.slice(0, dot)}.${pair}${tap.slice(dot)}`;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** Largest |a − b|, after checking the element counts agree. */
export function maxAbsDiff(what: string, a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(
    a.length,
    b.length,
    `${what}: ${a.length} values against the reference's ${b.length}`,
  );
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

async function inputs(pairName: string) {
  const pair = (await listSplit(FIX + "levir-cd")).find((p) => p.name === pairName);
  if (!pair) throw new Error(`levir-cd pair ${pairName} is missing from ${FIX}levir-cd`);
  const s = await loadSample(pair, undefined, IMAGENET);
  const shape = [1, 3, s.height, s.width];
  return { a: tensor(s.a, shape).keep(), b: tensor(s.b, shape).keep(), s };
}

export interface ParityReport {
  /** Max |Δ logit| over the pairs. */
  logits: number;
  /** Per tapped feature: max |Δ| / max(1, max |reference|). */
  features: Record<string, number>;
  loss: { ours: number; ref: number };
  /** Worst parameter: max |Δ grad| / max |reference grad|. */
  worstGrad: { name: string; ratio: number };
}

/**
 * Loads `weights/<file>.safetensors` into `model` (strict), then checks against
 * `weights/<file>.reference.safetensors`: logits within 1e-4 on every pair; every tapped feature
 * within 1e-4·max(1, max|ref|) and every reference feature tapped; the fixture's CE loss on the
 * first pair (eval mode) and every parameter's gradient within 1e-4·max|ref grad| (1e-7 absolute
 * where the reference is mathematically zero, |g| < 1e-6, e.g. a bias that cancels).
 */
export async function checkOpenCdParity(
  model: ChangeDetector,
  file: string,
): Promise<ParityReport> {
  await initDevice();
  loadCheckpoint(model, `${FIX}weights/${file}.safetensors`);
  model.eval();
  const ref = readSafetensors(`${FIX}weights/${file}.reference.safetensors`);
  const pairs = [...ref.keys()].filter((k) => k.startsWith("logits.")).map((k) => k.slice(7))
    .sort();
  assert.ok(pairs.length > 0, `${file}: no logits.* in the reference file`);
  const report: ParityReport = {
    logits: 0,
    features: {},
    loss: { ours: NaN, ref: NaN },
    worstGrad: { name: "", ratio: 0 },
  };

  for (const pair of pairs) {
    const { a, b } = await inputs(pair);
    const taps = new Map<string, Tensor>();
    const logits = scope(() =>
      noGrad(() =>
        model.forward(a, b, (name, t) => {
          assert.ok(!taps.has(name), `${file}: tap "${name}" reported twice`);
          taps.set(name, t.keep());
        })
      )
    );
    const out = (await logits.read()) as Float32Array;
    report.logits = Math.max(
      report.logits,
      maxAbsDiff(`${file} logits.${pair}`, out, ref.get(`logits.${pair}`)!.data),
    );
    const expected = [...ref.keys()].filter((k) =>
      !k.startsWith("logits.") && !k.startsWith("grad.") && !k.startsWith("loss") &&
      k.includes(`.${pair}`)
    );
    for (const k of expected) {
      const tap = [...taps.keys()].find((t) => refKey(t, pair) === k);
      assert.ok(tap, `${file}: reference ${k} has no tapped tensor (taps: ${[...taps.keys()]})`);
    }
    for (const [name, t] of taps) {
      const r = ref.get(refKey(name, pair));
      assert.ok(r, `${file}: tap "${name}" has no reference ${refKey(name, pair)}`);
      const d = maxAbsDiff(`${file} ${name}`, (await t.read()) as Float32Array, r.data);
      const rel = d / Math.max(1, maxAbs(r.data));
      report.features[name] = Math.max(report.features[name] ?? 0, rel);
      t.kept = false;
      t.dispose();
    }
    logits.dispose();
    a.kept = b.kept = false;
    a.dispose();
    b.dispose();
  }

  assert.ok(report.logits <= 1e-4, `${file}: max |Δ logit| ${report.logits}`);
  for (const [name, rel] of Object.entries(report.features)) {
    assert.ok(rel <= 1e-4, `${file}: feature ${name} off by ${rel} of max(1, max |ref|)`);
  }

  // One backward of the fixture's loss on the first pair, eval mode.
  const { a, b, s } = await inputs(pairs[0]);
  const params = model.namedParameters();
  for (const [, p] of params) {
    p.grad?.dispose();
    p.grad = null;
  }
  const lossValue = scope(() => {
    const label = tensor(Uint32Array.from(s.label), [1, s.height, s.width], "u32");
    const { loss } = cdLoss(model.forward(a, b), label);
    backward(loss);
    return loss.keep();
  });
  report.loss = {
    ours: ((await lossValue.read()) as Float32Array)[0],
    ref: ref.get("loss")!.data[0],
  };
  lossValue.kept = false;
  lossValue.dispose();
  const refGrads = [...ref.keys()].filter((k) => k.startsWith("grad."));
  assert.equal(
    refGrads.length,
    params.length,
    `${file}: ${params.length} parameters against ${refGrads.length} reference gradients`,
  );
  for (const [name, p] of params) {
    const r = ref.get(`grad.${name}`);
    assert.ok(r, `${file}: parameter ${name} has no reference gradient`);
    assert.ok(p.grad, `${file}: parameter ${name} got no gradient`);
    const g = (await p.grad.read()) as Float32Array;
    const m = maxAbs(r.data);
    const d = maxAbsDiff(`${file} grad.${name}`, g, r.data);
    const tol = m < 1e-6 ? 1e-7 : 1e-4 * m;
    const ratio = m < 1e-6 ? d / 1e-3 : d / m;
    if (ratio > report.worstGrad.ratio) report.worstGrad = { name, ratio };
    assert.ok(d <= tol, `${file}: grad.${name} max |Δ| ${d} > ${tol} (max |ref| ${m})`);
    p.grad.dispose();
    p.grad = null;
  }
  a.kept = b.kept = false;
  a.dispose();
  b.dispose();

  const dl = Math.abs(report.loss.ours - report.loss.ref);
  assert.ok(
    dl <= 1e-5 * Math.max(1, report.loss.ref),
    `${file}: loss ${report.loss.ours} vs ${report.loss.ref}`,
  );
  return report;
}
