// The matmul kernel's operands: where an operand's batch entry starts, and the code that moves
// one bk-deep slab of A or B from global memory through registers into shared memory (vec4 where
// the layout allows, bounds-checked only where the tile overhangs). kernels/matmul.ts assembles
// the kernel around it.

import type { MatmulSpec } from "./matmul.ts";

/** WGSL u32 expression Σ coord_d(v)·stride_d over dims (outermost first), in units of `unit`. */
export function offsetExpr(
  v: string,
  dims: { size: number; stride: number }[],
  unit: number,
): string {
  const terms: string[] = [];
  let inner = 1;
  for (let d = dims.length - 1; d >= 0; d--) {
    const { size, stride } = dims[d];
    if (size > 1 && stride !== 0) {
      const q = inner === 1 ? v : `(${v} / ${inner}u)`;
      const c = d === 0 ? q : `(${q} % ${size}u)`;
      const s = stride / unit;
      terms.push(s === 1 ? c : `${c} * ${s}u`);
    }
    inner *= size;
  }
  return terms.length ? terms.join(" + ") : "0u";
}

/** Everything the generator needs to know about one operand (A or B) and its shared slab. */
export interface Operand {
  name: "a" | "b";
  /** Extent along the non-reduced dim (M for A, N for B) and its tile size. */
  outer: number;
  tileOuter: number;
  /** Stored k-major ([K, outer] memory, contiguous along outer) or outer-major ([outer, K]). */
  kMajor: boolean;
  /** Leading dimension in elements. */
  ld: number;
  vec: boolean;
  /** Stored in half precision: each load converts to f32. */
  half?: boolean;
}

/** A shared-memory slot: stage, k row, vec4 column. Nested arrays keep the per-thread column
 * index free of the k row, so its bounds clamp is computed once, not per read. */
function shared(nm: string) {
  return (stage: string, k: string, col: string) => `${nm}_sh[${stage}][${k}][${col}]`;
}

/** Code for one operand's global→register loads and register→shared stores. Loads read the
 * slab starting at row k0 (u32 `k0`) from `<name>_base` (in load units); stores go to stage
 * `<name>_st`. */
export function operandCode(op: Operand, spec: MatmulSpec, threads: number) {
  const { bk } = spec.tile;
  const o4 = op.tileOuter / 4;
  const unit = op.vec ? 4 : 1;
  const ldU = op.ld / unit;
  const kFirst = spec.tile.kFirst ?? true;
  const checkOuter = op.outer % op.tileOuter !== 0;
  const checkK = spec.k % bk !== 0;
  const items = bk * op.tileOuter / unit;
  const per = Math.ceil(items / threads);
  const setup: string[] = [];
  const load: string[] = [];
  const store: string[] = [];
  const regType = op.vec ? "vec4<f32>" : "f32";
  const nm = op.name;
  const sh = shared(nm);
  const zero = op.vec ? "vec4<f32>(0.0)" : "0.0";
  for (let p = 0; p < per; p++) {
    const q = `(lid + ${p * threads}u)`;
    const guard = (items % threads !== 0 && p === per - 1) ? `${nm}_q${p} < ${items}u` : "";
    setup.push(`var ${nm}_r${p}: ${regType};`);
    if (guard) setup.push(`let ${nm}_q${p} = ${q};`);
    // This thread's place in the slab: k row, outer position, and its shared slot(s).
    let kk: string, gOff: string, kOff: string;
    const slots: string[] = []; // shared-memory lvalues, one per register component stored
    if (op.kMajor) {
      // Contiguous along outer: one load covers `unit` outer positions of one k row.
      const perRow = op.tileOuter / unit;
      kk = `(${q} / ${perRow}u)`;
      const ol = `(${q} % ${perRow}u)`;
      const og = checkOuter ? `min(${nm}_o0 + ${ol}, ${op.outer / unit - 1}u)` : `${nm}_o0 + ${ol}`;
      gOff = `${kk} * ${ldU}u + ${og}`;
      kOff = `k0 * ${ldU}u`;
      setup.push(`let ${nm}_sk${p} = ${kk};`);
      if (op.vec) {
        setup.push(`let ${nm}_so${p} = ${ol};`);
        slots.push(sh(`${nm}_st`, `${nm}_sk${p}`, `${nm}_so${p}`));
      } else {
        setup.push(`let ${nm}_so${p} = ${ol} / 4u;`, `let ${nm}_sc${p} = ${ol} % 4u;`);
        slots.push(`${sh(`${nm}_st`, `${nm}_sk${p}`, `${nm}_so${p}`)}[${nm}_sc${p}]`);
      }
    } else {
      // Contiguous along k: one load covers `unit` consecutive k of one outer row, stored
      // transposed (one component into each of `unit` k rows).
      const perRow = bk / unit;
      const [o, kl] = kFirst
        ? [`(${q} / ${perRow}u)`, `(${q} % ${perRow}u)`]
        : [`(${q} % ${op.tileOuter}u)`, `(${q} / ${op.tileOuter}u)`];
      kk = op.vec ? `(${kl} * 4u)` : kl;
      const og = checkOuter ? `min(${nm}_o0e + ${o}, ${op.outer - 1}u)` : `${nm}_o0e + ${o}`;
      gOff = `(${og}) * ${ldU}u + ${kl}`;
      kOff = `k0 / ${unit}u`;
      setup.push(
        `let ${nm}_sk${p} = ${kk};`,
        `let ${nm}_so${p} = ${o} / 4u;`,
        `let ${nm}_sc${p} = ${o} % 4u;`,
      );
      for (let j = 0; j < unit; j++) {
        const k = j ? `${nm}_sk${p} + ${j}u` : `${nm}_sk${p}`;
        slots.push(`${sh(`${nm}_st`, k, `${nm}_so${p}`)}[${nm}_sc${p}]`);
      }
    }
    setup.push(`let ${nm}_g${p} = ${gOff};`);
    const at = `${nm}_in[${nm}_base + ${nm}_g${p} + ${kOff}]`;
    let ld = `${nm}_r${p} = ${op.half ? `${regType}(${at})` : at};`;
    if (checkK) {
      ld = `if (k0 + ${nm}_sk${p} < ${spec.k}u) { ${ld} } else { ${nm}_r${p} = ${zero}; }`;
    }
    load.push(guard ? `if (${guard}) { ${ld} }` : ld);
    const st = slots.length === 1 && !(op.vec && !op.kMajor)
      ? `${slots[0]} = ${nm}_r${p};`
      : slots.map((sl, j) => `${sl} = ${nm}_r${p}[${j}];`).join(" ");
    store.push(guard ? `if (${guard}) { ${st} }` : st);
  }
  const decl = `array<array<array<vec4<f32>, ${o4}>, ${bk}>, 1>`;
  return { setup, load, store, decl, sh };
}
