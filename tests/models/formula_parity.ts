// Parity harness for the rest of Table II (../shared/fixtures/formula, README "formula/"):
// weights regenerated from each model's manifest (engine/formula_weights.ts), then the upstream
// code's outputs on the first two LEVIR pairs (logits, or a model's documented output, plus
// any other per-pair reference tensor, which the model must tap), the configured loss on the
// first pair in eval mode, and the listed parameters' gradients. One harness so that every
// model is held to the same rules; a test passes only what its model's README entry documents.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { backward, noGrad } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { readFormulaWeights } from "../../engine/formula_weights.ts";
import { loadInto, readSafetensors } from "../../engine/safetensors.ts";
import { scope } from "../../engine/scope.ts";
import { type Tensor, tensor } from "../../engine/tensor.ts";
import { listSplit } from "../../data/dataset.ts";
import { IMAGENET } from "../../data/loader.ts";
import { loadSample } from "../../data/sample.ts";
import type { ChangeDetector } from "../../models/model.ts";
import { trainingLoss } from "../../train/loss.ts";

export const FORMULA = new URL("../../../shared/fixtures/formula/", import.meta.url).pathname;
const LEVIR = new URL("../../../shared/fixtures/levir-cd", import.meta.url).pathname;

/** Whether `<model>_formula.json` exists; logs why the tests skip when not. */
export function formulaPresent(model: string): boolean {
  const ok = existsSync(`${FORMULA}${model}_formula.json`);
  if (!ok) console.log(`skipping ${model} parity: ${FORMULA} is absent (it ships beside the repo)`);
  return ok;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function maxAbsDiff(what: string, a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, `${what}: ${a.length} values against ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** Reference key of a tap: tap "aux.0" on pair NAME → "aux.NAME.0"; tap "dist" → "dist.NAME". */
function refKey(tap: string, pair: string): string {
  const dot = tap.indexOf(".");
  return dot < 0 ? `${tap}.${pair}` : `${tap.slice(0, dot)}.${pair}${tap.slice(dot)}`;
}

export interface FormulaParityOptions {
  /** Max |Δ| allowed on logits and tapped outputs (default 1e-4, the bound). */
  outputTol?: number;
  /** Gradient bound: |Δ| ≤ gradRel·max|ref grad of the tensor| + 1e-5·(largest |grad| among the
   * stored tensors), README's rule with the 1e-4 (default) as the relative part. */
  gradRel?: number;
  /** The configured loss on the first pair (eval mode) from the forward's logits: by default
   * the model's training loss without distillation (train/loss.ts). */
  loss?: (model: ChangeDetector, logits: Tensor, labels: Tensor) => Tensor;
  /** Reference tensors per pair that are not the model's taps (documented in the test). */
  skipRefs?: string[];
  /** Reference values replaced by better ones (a float64 recomputation of a gradient the
   * reference rounded beyond the bound, from the reference's own outputs; documented in the
   * test), by reference key. */
  refOverrides?: Record<string, Float32Array>;
}

export interface FormulaParityReport {
  logits: number;
  taps: Record<string, number>;
  loss: { ours: number; ref: number };
  worstGrad: { name: string; ratio: number };
}

async function inputs(pairName: string) {
  const pair = (await listSplit(LEVIR)).find((p) => p.name === pairName);
  if (!pair) throw new Error(`levir-cd pair ${pairName} is missing from ${LEVIR}`);
  const s = await loadSample(pair, undefined, IMAGENET);
  const shape = [1, 3, s.height, s.width];
  return { a: tensor(s.a, shape).keep(), b: tensor(s.b, shape).keep(), s };
}

function release(...ts: Tensor[]): void {
  for (const t of ts) {
    t.kept = false;
    t.dispose();
  }
}

/** Fill `model` from `<name>_formula.json` (strict), then check it against the reference. */
export async function checkFormulaParity(
  model: ChangeDetector,
  name: string,
  opts: FormulaParityOptions = {},
): Promise<FormulaParityReport> {
  await initDevice();
  const { outputTol = 1e-4, gradRel = 1e-4, skipRefs = [] } = opts;
  const manifest = `${FORMULA}${name}_formula.json`;
  loadInto(model.stateDict(), await readFormulaWeights(manifest), { name: manifest });
  model.eval();
  const ref = readSafetensors(`${FORMULA}${name}_formula.reference.safetensors`);
  const outKey = [...ref.keys()].some((k) => k.startsWith("logits.")) ? "logits" : "dist";
  const pairs = [...ref.keys()].filter((k) => k.startsWith(`${outKey}.`))
    .map((k) => k.slice(outKey.length + 1)).sort();
  assert.ok(pairs.length > 0, `${name}: no logits.* in the reference file`);
  const report: FormulaParityReport = {
    logits: 0,
    taps: {},
    loss: { ours: NaN, ref: NaN },
    worstGrad: { name: "", ratio: 0 },
  };

  const params = new Map(model.namedParameters());
  for (const p of params.values()) {
    p.grad?.dispose();
    p.grad = null;
  }
  // Pair 0 runs once, with gradients: its outputs are compared and its configured loss (eval
  // mode, as upstream) goes backward; later pairs run without. One forward fewer per model
  // keeps these large models' tests affordable on two cores.
  for (const [index, pair] of pairs.entries()) {
    const { a, b, s } = await inputs(pair);
    const taps = new Map<string, Tensor>();
    const tap = (name: string, t: Tensor) => {
      assert.ok(!taps.has(name), `${model.constructor.name}: tap "${name}" reported twice`);
      taps.set(name, t.keep());
    };
    let lossValue: Tensor | null = null;
    const out = scope(() => {
      if (index > 0) return noGrad(() => model.forward(a, b, tap));
      const labels = tensor(Uint32Array.from(s.label), [1, s.height, s.width], "u32");
      const logits = model.forward(a, b, tap);
      const loss = opts.loss
        ? opts.loss(model, logits, labels)
        : trainingLoss(model, logits, labels);
      backward(loss);
      lossValue = loss.keep();
      return logits;
    });
    if (lossValue) {
      const v = lossValue as Tensor;
      report.loss = { ours: ((await v.read()) as Float32Array)[0], ref: ref.get("loss")!.data[0] };
      release(v);
    }
    const r = ref.get(`logits.${pair}`);
    if (r) {
      const d = maxAbsDiff(`${name} logits.${pair}`, (await out.read()) as Float32Array, r.data);
      report.logits = Math.max(report.logits, d);
    }
    const expected = [...ref.keys()].filter((k) =>
      !k.startsWith("logits.") && !k.startsWith("grad.") && !k.startsWith("loss") &&
      k.includes(`.${pair}`) && !skipRefs.some((s) => k === refKey(s, pair))
    );
    for (const k of expected) {
      const t = [...taps.keys()].find((t) => refKey(t, pair) === k);
      assert.ok(t, `${name}: reference ${k} has no tapped tensor (taps: ${[...taps.keys()]})`);
    }
    for (const [tname, t] of taps) {
      const rk = refKey(tname, pair);
      const rt = ref.get(rk);
      if (rt) {
        const d = maxAbsDiff(`${name} ${rk}`, (await t.read()) as Float32Array, rt.data);
        report.taps[tname] = Math.max(report.taps[tname] ?? 0, d);
      }
      release(t); // a tap the reference lacks is the model's own debugging aid
    }
    out.dispose();
    release(a, b);
  }
  assert.ok(report.logits <= outputTol, `${name}: max |Δ logit| ${report.logits}`);
  for (const [tname, d] of Object.entries(report.taps)) {
    assert.ok(d <= outputTol, `${name}: ${tname} off by ${d}`);
  }

  for (const [k, v] of Object.entries(opts.refOverrides ?? {})) {
    const r = ref.get(k);
    assert.ok(r && r.data.length === v.length, `${name}: override ${k} fits no reference tensor`);
    ref.set(k, { ...r, data: v });
  }
  const refGrads = [...ref.keys()].filter((k) => k.startsWith("grad."));
  assert.ok(refGrads.length > 0, `${name}: no reference gradients`);
  const global = Math.max(...refGrads.map((k) => maxAbs(ref.get(k)!.data)));
  const failures: string[] = [];
  for (const k of refGrads) {
    const pname = k.slice(5);
    const p = params.get(pname);
    assert.ok(p, `${name}: the reference has ${k}, the model has no parameter ${pname}`);
    assert.ok(p.grad, `${name}: parameter ${pname} got no gradient`);
    const r = ref.get(k)!;
    const g = (await p.grad.read()) as Float32Array;
    const m = maxAbs(r.data);
    const d = maxAbsDiff(`${name} ${k}`, g, r.data);
    const tol = gradRel * m + 1e-5 * global;
    const ratio = d / Math.max(m, 1e-30);
    if (ratio > report.worstGrad.ratio) report.worstGrad = { name: pname, ratio };
    if (!(d <= tol)) failures.push(`${k} max |Δ| ${d} > ${tol} (max |ref| ${m})`);
  }
  // Every gradient is checked before failing, so one run names all that are off.
  assert.ok(failures.length === 0, `${name}: ${failures.join("; ")}`);
  for (const p of params.values()) {
    p.grad?.dispose();
    p.grad = null;
  }
  const dl = Math.abs(report.loss.ours - report.loss.ref);
  assert.ok(
    dl <= 1e-5 * Math.max(1, Math.abs(report.loss.ref)),
    `${name}: loss ${report.loss.ours} vs ${report.loss.ref}`,
  );
  return report;
}
