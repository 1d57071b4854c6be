// Ops that move data without arithmetic (concat, slice, permute, interleave, flip, rot90, pad)
// plus absDiff, each a strided-copy or pad kernel with the inverse movement as its backward.
// flip, rot90 and pad also take u32/i32 tensors (labels in augmentation); those get no gradient.

import { prod, type StorageType, stridesOf } from "../../kernels/common.ts";
import { fillKernel } from "../../kernels/elementwise.ts";
import {
  paddedSize,
  padGradKernel,
  padKernel,
  type PadMode,
  stridedCopyKernel,
  type StridedView,
} from "../../kernels/layout.ts";
import { transposeFits, transposeKernel, type TransposeSpec } from "../../kernels/transpose.ts";
import { record, ruleIgnoresOutput } from "../autograd.ts";
import { type Operand, run } from "../launch.ts";
import { empty, type Shape, type Tensor } from "../tensor.ts";
import { mapInto, mapWithRecipe } from "./elementwise.ts";
import { sumTo } from "./reduce.ts";

export type { PadMode };

function storageType(t: Tensor, op: string): StorageType {
  if (t.dtype === "u8") throw new Error(`${op}: ${t.describe()}: u8 tensors are packed, use u32`);
  if (t.dtype === "f16") {
    throw new Error(
      `${op}: ${t.describe()}: f16 is kernels' internal storage (engine/precision.ts)`,
    );
  }
  return t.dtype;
}

function normAxis(axis: number, ndim: number, op: string): number {
  const a = axis < 0 ? axis + ndim : axis;
  if (!Number.isInteger(a) || a < 0 || a >= ndim) {
    throw new Error(`${op}: axis ${axis} out of range for ${ndim} dimensions`);
  }
  return a;
}

const contiguous = (shape: Shape): StridedView => ({ offset: 0, strides: stridesOf(shape) });

/** A new tensor read from `x` through `src` (offset and strides per axis of `shape`, the
 * iterated shape); the result has `outShape` (same size), by default `shape`. */
function gather(
  name: string,
  x: Tensor,
  shape: Shape,
  src: StridedView,
  outShape: Shape = shape,
): Tensor {
  const out = empty(outShape, x.dtype);
  gatherInto(name, x, shape, src, out);
  return out;
}

/** gather() into a given range (a recipe's target). */
function gatherInto(name: string, x: Tensor, shape: Shape, src: StridedView, out: Operand): void {
  const type = storageType(x, name);
  run(stridedCopyKernel({ name, shape, src, dst: contiguous(shape), type }), [x], [out]);
}

/** Write contiguous `src`, iterated as `shape`, into `dst` through the view `at`. */
function scatterInto(
  name: string,
  src: Tensor,
  dst: Operand,
  at: StridedView,
  shape: Shape = src.shape,
): void {
  const type = storageType(src, name);
  run(stridedCopyKernel({ name, shape, src: contiguous(shape), dst: at, type }), [src], [dst]);
}

function zerosLike(shape: Shape): Tensor {
  const t = empty(shape);
  run(fillKernel(t.size, 0), [], [t]);
  return t;
}

/** Join tensors along `axis`; all other axes must match. */
export function concat(tensors: Tensor[], axis: number): Tensor {
  if (tensors.length === 0) throw new Error("concat: no tensors");
  const first = tensors[0];
  const ax = normAxis(axis, first.ndim, "concat");
  for (const t of tensors) {
    const same = t.ndim === first.ndim && t.dtype === first.dtype &&
      t.shape.every((d, k) => k === ax || d === first.shape[k]);
    if (!same) {
      throw new Error(`concat: ${t.describe()} does not fit ${first.describe()} on axis ${ax}`);
    }
  }
  const shape = first.shape.map((d, k) =>
    k === ax ? tensors.reduce((s, t) => s + t.shape[k], 0) : d
  );
  const out = empty(shape, first.dtype);
  const strides = stridesOf(shape);
  const starts: number[] = [];
  let pos = 0;
  for (const t of tensors) {
    starts.push(pos);
    pos += t.shape[ax];
  }
  // Also the recipe for `out` (Tensor.evict): the same copies again. The inputs outlive every
  // backward rule that reads the joined tensor (concat's own rule, among their readers, runs
  // after its consumers'), so a model can let a concat go once its forward reader is done (a
  // conv whose weight gradient reads it) and pay one copy in the backward instead of holding
  // a duplicate of its inputs. Inputs without gradients are off the tape: the model keeps them.
  // Its rule slices g alone (ruleIgnoresOutput): with freeActivations the joined tensor goes once
  // its consumers' rules have run, not beside the gradient slices its own rule copies out.
  const copies = (o: Operand) =>
    tensors.forEach((t, j) => {
      if (t.size > 0) scatterInto("concat", t, o, { offset: starts[j] * strides[ax], strides });
    });
  copies(out);
  return ruleIgnoresOutput(record(
    out,
    tensors,
    "concat",
    (g) =>
      tensors.map((t, j) =>
        t.requiresGrad
          ? gather("concat_grad", g, t.shape, { offset: starts[j] * strides[ax], strides })
          : null
      ),
    copies,
  ));
}

/** Elements start ≤ i < end along `axis` (negative indices count from the end). */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const ax = normAxis(axis, x.ndim, "slice");
  const n = x.shape[ax];
  const s = start < 0 ? start + n : start;
  const e = end < 0 ? end + n : end;
  if (!(Number.isInteger(s) && Number.isInteger(e) && 0 <= s && s <= e && e <= n)) {
    throw new Error(`slice: [${start}, ${end}) out of range for axis ${ax} of ${x.describe()}`);
  }
  const shape = x.shape.map((d, k) => (k === ax ? e - s : d));
  const strides = stridesOf(x.shape);
  const at = { offset: s * strides[ax], strides };
  const out = gather("slice", x, shape, at);
  return record(out, [x], "slice", (g) => {
    const dx = zerosLike(x.shape);
    if (g.size > 0) scatterInto("slice_grad", g, dx, at);
    return [dx];
  });
}

/** [batch, rows, cols] when permuting by `dims` only swaps two blocks of axes (after dropping
 * size-1 axes and merging axes that stay neighbours), as NCHW → NHWC does; else null. */
function asBatchedTranspose(shape: Shape, dims: number[]): [number, number, number] | null {
  const kept = dims.filter((a) => shape[a] > 1);
  const rank = new Map([...kept].sort((a, b) => a - b).map((a, i) => [a, i]));
  const runs: { first: number; size: number }[] = [];
  let prev = -2;
  for (const a of kept) {
    const r = rank.get(a)!;
    if (r === prev + 1) runs[runs.length - 1].size *= shape[a];
    else runs.push({ first: r, size: shape[a] });
    prev = r;
  }
  const [a, b, c] = runs;
  if (runs.length === 2 && a.first > b.first) return [1, b.size, a.size];
  if (runs.length === 3 && a.first === 0 && b.first > c.first) return [a.size, c.size, b.size];
  return null;
}

/** Below this many rows or columns a tile would be mostly idle: the strided copy does better. */
const MIN_TILED = 8;

/** [batch, rows, cols] → [batch, cols, rows] (optionally flipped) through shared-memory tiles;
 * falls back to a strided copy for thin matrices or launches past the workgroup limits. */
function tiledTranspose(x: Tensor, outShape: Shape, spec: TransposeSpec): Tensor {
  const out = empty(outShape, x.dtype);
  tiledTransposeInto(x, spec, out);
  return out;
}

/** tiledTranspose() into a given range (a recipe's target). */
function tiledTransposeInto(x: Tensor, spec: TransposeSpec, out: Operand): void {
  const type = storageType(x, "transpose");
  const { batch, rows, cols } = spec;
  if (rows >= MIN_TILED && cols >= MIN_TILED && transposeFits(spec)) {
    run(transposeKernel({ ...spec, type }), [x], [out]);
    return;
  }
  const [rs, cs] = [spec.flipRows ? -cols : cols, spec.flipCols ? -1 : 1];
  const offset = (spec.flipRows ? (rows - 1) * cols : 0) + (spec.flipCols ? cols - 1 : 0);
  gatherInto("transpose", x, [batch, cols, rows], { offset, strides: [rows * cols, cs, rs] }, out);
}

/** Reorder axes: output axis k is input axis dims[k] (a materialised copy). */
export function permute(x: Tensor, dims: readonly number[]): Tensor {
  const d = dims.map((a) => normAxis(a, x.ndim, "permute"));
  if (d.length !== x.ndim || new Set(d).size !== d.length) {
    throw new Error(`permute: [${dims.join(", ")}] is not a permutation of ${x.describe()}'s axes`);
  }
  const shape = d.map((a) => x.shape[a]);
  const swap = asBatchedTranspose(x.shape, d);
  const strides = stridesOf(x.shape);
  // Also the recipe for `out` (Tensor.evict): the same copy again, from x, which outlives
  // out's backward readers. The rule reads no output (ruleIgnoresOutput): an evicted permute (the
  // heads merged back before a projection, read by its weight gradient) goes again once that
  // rule has run.
  const copy = (o: Operand) =>
    swap
      ? tiledTransposeInto(x, { batch: swap[0], rows: swap[1], cols: swap[2] }, o)
      : gatherInto("permute", x, shape, { offset: 0, strides: d.map((a) => strides[a]) }, o);
  const out = empty(shape, x.dtype);
  copy(out);
  const inverse = d.map((_, k) => d.indexOf(k));
  return ruleIgnoresOutput(record(out, [x], "permute", (g) => [permute(g, inverse)], copy));
}

/** Swap two axes (a materialised copy). */
export function transpose(x: Tensor, a: number, b: number): Tensor {
  const dims = x.shape.map((_, k) => k);
  const i = normAxis(a, x.ndim, "transpose"), j = normAxis(b, x.ndim, "transpose");
  [dims[i], dims[j]] = [dims[j], dims[i]];
  return permute(x, dims);
}

/** [B, C, ...] and [B, C, ...] → [B, 2C, ...] with channels a0, b0, a1, b1, … (as
 * torch.stack((a, b), dim=2).reshape(B, 2C, ...)). */
export function interleaveChannels(a: Tensor, b: Tensor): Tensor {
  const same = a.ndim === b.ndim && a.dtype === b.dtype &&
    a.shape.every((d, k) => d === b.shape[k]);
  if (!same || a.ndim < 2) {
    throw new Error(`interleaveChannels: ${a.describe()} and ${b.describe()} must match, ≥ 2-D`);
  }
  const [batch, c] = a.shape;
  const inner = prod(a.shape.slice(2));
  const shape = [batch, 2 * c, ...a.shape.slice(2)];
  const out = empty(shape, a.dtype);
  // Input j of the pair lands at channels 2k + j: a strided view of the output.
  const flat = [batch, c, inner];
  const at = (j: number) => ({ offset: j * inner, strides: [2 * c * inner, 2 * inner, 1] });
  scatterInto("interleave", a, out, at(0), flat);
  scatterInto("interleave", b, out, at(1), flat);
  return record(
    out,
    [a, b],
    "interleave",
    (g) =>
      [a, b].map((t, j) =>
        t.requiresGrad ? gather("interleave_grad", g, flat, at(j), t.shape) : null
      ),
  );
}

/** Reverse the order of elements along `axes` (any dtype but u8; gradient for f32). */
export function flip(x: Tensor, axes: readonly number[]): Tensor {
  const ax = [...new Set(axes.map((a) => normAxis(a, x.ndim, "flip")))];
  const strides = stridesOf(x.shape);
  let offset = 0;
  const src = strides.map((s, k) => {
    if (!ax.includes(k)) return s;
    offset += (x.shape[k] - 1) * s;
    return -s;
  });
  const out = gather("flip", x, x.shape, { offset, strides: src });
  return record(out, [x], "flip", (g) => [flip(g, ax)]);
}

/** Rotate the plane of the last two axes (H, W of NCHW) by k·90°, from the first of them
 * towards the second, as torch.rot90(x, k, dims=(-2, -1)). Any dtype but u8. */
export function rot90(x: Tensor, k: number): Tensor {
  if (!Number.isInteger(k) || x.ndim < 2) {
    throw new Error(`rot90: needs a whole k and ≥ 2 axes, got k=${k} for ${x.describe()}`);
  }
  const r = ((k % 4) + 4) % 4;
  const lead = x.shape.slice(0, -2);
  const [h, w] = x.shape.slice(-2);
  const leadStrides = stridesOf(x.shape).slice(0, -2);
  // out[i, j] reads x[j, w-1-i] (k=1), x[h-1-i, w-1-j] (k=2), x[h-1-j, i] (k=3).
  const [plane, offset] = [
    [[w, 1], 0],
    [[-1, w], w - 1],
    [[-w, -1], h * w - 1],
    [[1, -w], (h - 1) * w],
  ][r] as [number[], number];
  const shape = [...lead, ...(r % 2 ? [w, h] : [h, w])];
  const out = r % 2
    ? tiledTranspose(x, shape, {
      batch: prod(lead),
      rows: h,
      cols: w,
      flipCols: r === 1,
      flipRows: r === 3,
    })
    : gather("rot90", x, shape, { offset, strides: [...leadStrides, ...plane] });
  return record(out, [x], "rot90", (g) => [rot90(g, -r)]);
}

/** Pad the last two axes by [left, right, top, bottom] (negative values crop) with zeros or
 * by repeating the border. Takes u32/i32 too (no gradient). */
export function pad2d(
  x: Tensor,
  [left, right, top, bottom]: readonly [number, number, number, number],
  mode: PadMode = "zeros",
): Tensor {
  if (x.ndim < 2) throw new Error(`pad2d: ${x.describe()} needs ≥ 2 axes`);
  const [h, w] = x.shape.slice(-2);
  const spec = {
    outer: prod(x.shape.slice(0, -2)),
    h,
    w,
    left,
    right,
    top,
    bottom,
    mode,
    type: storageType(x, "pad2d"),
  };
  const [ho, wo] = paddedSize(spec);
  if (![left, right, top, bottom].every(Number.isInteger) || ho < 1 || wo < 1) {
    throw new Error(`pad2d: padding [${left}, ${right}, ${top}, ${bottom}] of ${x.describe()}`);
  }
  const out = empty([...x.shape.slice(0, -2), ho, wo], x.dtype);
  run(padKernel(spec), [x], [out]);
  return record(out, [x], "pad2d", (g) => {
    const dx = empty(x.shape);
    run(padGradKernel({ ...spec, type: "f32" }), [g], [dx]);
    return [dx];
  });
}

/** |a − b| with broadcasting; gradient sign(a − b) for a and −sign(a − b) for b. The rule reads
 * a and b, not the output, which may therefore be evicted (Tensor.evict) once consumed. */
export function absDiff(a: Tensor, b: Tensor): Tensor {
  const { out, recipe } = mapWithRecipe("abs_diff", "abs(a - b)", [a, b]);
  // Added into each input's gradient so far where autograd offers it (FC-Siam-Diff's skips).
  return ruleIgnoresOutput(record(out, [a, b], "abs_diff", (g, into) => [
    a.requiresGrad
      ? sumTo(mapInto("abs_diff_grad", "a * sign(b - c)", [g, a, b], into?.[0]), a.shape)
      : null,
    b.requiresGrad
      ? sumTo(mapInto("abs_diff_grad", "a * sign(c - b)", [g, a, b], into?.[1]), b.shape)
      : null,
  ], recipe));
}
