// Formula weights: a state_dict defined by a manifest instead of a file. Each key's values come
// from a seeded xorshift32 stream (seed = FNV-1a of the key) and a per-key rule, so a 160 MB
// model's parity weights are regenerated exactly instead of shipped. The manifest format and
// the formula are ../shared/fixtures/README.md's "The weight formula"; the manifest's
// `check_values` (float32 bit patterns from the Python generator) are verified on every load, so
// a manifest from another generator is refused rather than silently giving other weights.

import { type SafeEntry, SafetensorsMap } from "./safetensors_format.ts";

export type FormulaRule =
  | "fan"
  | "bias"
  | "norm_weight"
  | "norm_bias"
  | "running_mean"
  | "running_var"
  | "zero"
  | "alias";

export interface FormulaKey {
  key: string;
  shape: number[];
  dtype: string;
  rule: FormulaRule;
  /** `alias`: the key whose tensor this one is (a module shared under two names). */
  of?: string;
}

export interface FormulaManifest {
  model: string;
  params?: number;
  rules: FormulaKey[];
  check_values?: Record<string, { first_bits: string[]; last_bits: string[] }>;
}

/** FNV-1a 32-bit hash of the key's UTF-8 bytes; 0 becomes 1 (xorshift's state must not be 0). */
export function fnv1a(key: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(key)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h === 0 ? 1 : h;
}

/** The values of one key, by its rule, rounded once to float32. */
export function formulaValues(k: FormulaKey): Float32Array {
  const n = k.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  if (k.rule === "zero") return out;
  // s first, as the formula says: the order of the float64 operations is part of the values.
  const s = k.rule === "fan" ? 1 / Math.sqrt(n / k.shape[0]) : 0;
  let x = fnv1a(k.key);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const u = x / 4294967296 * 2 - 1;
    out[i] = valueOf(k.rule, u, s);
  }
  return out;
}

function valueOf(rule: FormulaRule, u: number, s: number): number {
  switch (rule) {
    case "fan":
      return u * s;
    case "bias":
    case "norm_bias":
    case "running_mean":
      return 0.1 * u;
    case "norm_weight":
      return 1 + 0.1 * u;
    case "running_var":
      return 1 + 0.25 * (u + 1);
    default:
      throw new Error(`formula rule "${rule}" has no value`);
  }
}

const RULES = new Set<string>([
  "fan",
  "bias",
  "norm_weight",
  "norm_bias",
  "running_mean",
  "running_var",
  "zero",
  "alias",
]);

/** Parse and check a manifest's text; `name` (the file) is in every error. */
export function parseFormulaManifest(text: string, name: string): FormulaManifest {
  let m: FormulaManifest;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new Error(`${name}: not JSON (${(e as Error).message}); pass a *_formula.json manifest`);
  }
  if (!m || typeof m.model !== "string" || !Array.isArray(m.rules)) {
    throw new Error(
      `${name}: not a formula-weights manifest (it needs "model" and "rules"); pass a ` +
        `*_formula.json file such as ../shared/fixtures/formula/hanet_formula.json`,
    );
  }
  const keys = new Set(m.rules.map((r) => r.key));
  for (const r of m.rules) {
    const shapeOk = Array.isArray(r.shape) && r.shape.every((d) => Number.isInteger(d) && d >= 0);
    if (typeof r.key !== "string" || !shapeOk || !RULES.has(r.rule)) {
      throw new Error(`${name}: rule for "${r.key}" is malformed (key, shape, rule "${r.rule}")`);
    }
    if (r.rule === "alias" && (!r.of || !keys.has(r.of))) {
      throw new Error(`${name}: "${r.key}" aliases "${r.of}", which the manifest lacks`);
    }
    if (r.rule === "fan" && r.shape.length < 2) {
      throw new Error(
        `${name}: "${r.key}" has rule fan but shape [${r.shape}] (fan needs ≥ 2 dims)`,
      );
    }
  }
  return m;
}

function bitsHex(v: Float32Array, from: number, count: number): string[] {
  const u = new Uint32Array(v.buffer, v.byteOffset + from * 4, count);
  return [...u].map((b) => b.toString(16).padStart(8, "0"));
}

/**
 * The state_dict a manifest defines, as safetensors-like entries (loadInto takes them as it
 * takes a file's). `zero` keys (num_batches_tracked) are I64 zeros; aliases share the values
 * of the key they name. Throws, naming the manifest and the key, if a check value differs.
 */
export function formulaEntries(m: FormulaManifest, name = m.model): SafetensorsMap {
  const out = new SafetensorsMap();
  out.metadata = { model: m.model, source: `formula weights (${name})` };
  const values = new Map<string, Float32Array>();
  for (const r of m.rules) {
    if (r.rule === "alias") continue;
    values.set(r.key, formulaValues(r));
  }
  for (const r of m.rules) {
    const data = r.rule === "alias" ? values.get(r.of!)! : values.get(r.key)!;
    const entry: SafeEntry = r.rule === "zero"
      ? { dtype: "I64", shape: r.shape, data: new Float64Array(data.length) }
      : { dtype: "F32", shape: r.shape, data };
    out.set(r.key, entry);
  }
  for (const [key, want] of Object.entries(m.check_values ?? {})) {
    const v = values.get(key);
    if (!v) throw new Error(`${name}: check value for "${key}", which the manifest lacks`);
    const first = bitsHex(v, 0, Math.min(want.first_bits.length, v.length));
    const nLast = Math.min(want.last_bits.length, v.length);
    const last = bitsHex(v, v.length - nLast, nLast);
    if (first.join() !== want.first_bits.join() || last.join() !== want.last_bits.join()) {
      throw new Error(
        `${name}: "${key}" regenerates as ${first.join(" ")} … but the manifest's check ` +
          `values are ${want.first_bits.join(" ")} …: the manifest comes from another formula`,
      );
    }
  }
  return out;
}

/** Read and check a manifest file; errors name the file. */
export async function readFormulaManifest(path: string): Promise<FormulaManifest> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`${path}: formula manifest not found (--weights-formula)`);
    }
    throw new Error(`${path}: cannot read (${(e as Error).message})`);
  }
  return parseFormulaManifest(text, path);
}

/** Read a manifest file and generate its entries. */
export async function readFormulaWeights(path: string): Promise<SafetensorsMap> {
  return formulaEntries(await readFormulaManifest(path), path);
}
