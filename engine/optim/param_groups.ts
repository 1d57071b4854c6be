// Per-parameter LR and weight-decay multipliers chosen by name, with the rule of mmengine's
// DefaultOptimWrapperConstructor (`paramwise_cfg.custom_keys`), so an Open-CD recipe such as
// {pos_block: decay 0, norm: decay 0, head: lr ×10} gives every parameter the same group it
// gets upstream. The optimiser (adamw.ts) takes the multipliers per parameter.

export interface KeyRule {
  lrMult?: number;
  decayMult?: number;
}

export interface ParamMult {
  lrMult: number;
  decayMult: number;
  /** The custom key that chose this (null: none matched, multipliers 1). */
  key: string | null;
}

/** Python's len(): code points, not UTF-16 units. */
function pyLen(s: string): number {
  return [...s].length;
}

/** Python's default string order (by code point). */
function pyCompare(a: string, b: string): number {
  const x = [...a].map((c) => c.codePointAt(0)!), y = [...b].map((c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/** mmengine's order: `sorted(sorted(keys), key=len, reverse=True)` — longest first, ties
 * alphabetical (Python's sort stays stable under reverse=True; so does Array.sort). */
export function sortedCustomKeys(keys: Iterable<string>): string[] {
  return [...keys].sort(pyCompare).sort((a, b) => pyLen(b) - pyLen(a));
}

/**
 * Multipliers of each named parameter: the first key (in sortedCustomKeys order) that is a
 * substring of the parameter's full name wins; no match gives 1 and 1. Upstream tests the name
 * `${prefix}.${name}`, which for a parameter owned by a child module is its state_dict name; a
 * parameter of the root module is tested as `.name`, reproduced here.
 */
export function paramMultipliers(
  names: readonly string[],
  customKeys: Record<string, KeyRule>,
): ParamMult[] {
  const keys = sortedCustomKeys(Object.keys(customKeys));
  for (const k of keys) {
    const r = customKeys[k];
    for (const [what, v] of [["lrMult", r.lrMult], ["decayMult", r.decayMult]] as const) {
      if (v !== undefined && !(v >= 0 && Number.isFinite(v))) {
        throw new Error(`custom key "${k}": ${what} must be a finite number ≥ 0, got ${v}`);
      }
    }
  }
  return names.map((name) => {
    const full = name.includes(".") ? name : `.${name}`;
    const key = keys.find((k) => full.includes(k)) ?? null;
    const r = key === null ? {} : customKeys[key];
    return { lrMult: r.lrMult ?? 1, decayMult: r.decayMult ?? 1, key };
  });
}
