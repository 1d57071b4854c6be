// Data-moving kernels. One strided copy covers permute, slice, concat (one copy per piece),
// flip and rot90 (negative strides) and channel interleaving; pad has its own gather kernels
// because it clamps or zero-fills at the borders.

import { cached, type Kernel, kernel1d, prod, ro, rw, type StorageType } from "./common.ts";

/** Where a copy reads or writes: a flat element offset plus one stride per iterated axis
 * (strides may be negative, e.g. for flips). */
export interface StridedView {
  offset: number;
  strides: readonly number[];
}

export interface StridedCopySpec {
  name: string;
  /** The shape iterated over: one thread per element. */
  shape: readonly number[];
  src: StridedView;
  dst: StridedView;
  type?: StorageType;
}

/** Drop size-1 axes and merge neighbours that are contiguous in both views, so the index math
 * has as few divisions as possible. */
function collapse(spec: StridedCopySpec): { shape: number[]; src: number[]; dst: number[] } {
  const shape: number[] = [], src: number[] = [], dst: number[] = [];
  spec.shape.forEach((n, k) => {
    if (n === 1) return;
    const last = shape.length - 1;
    if (
      last >= 0 && src[last] === spec.src.strides[k] * n && dst[last] === spec.dst.strides[k] * n
    ) {
      shape[last] *= n;
      src[last] = spec.src.strides[k];
      dst[last] = spec.dst.strides[k];
      return;
    }
    shape.push(n);
    src.push(spec.src.strides[k]);
    dst.push(spec.dst.strides[k]);
  });
  return { shape, src, dst };
}

/** WGSL i32 expression of offset + Σ coord_k · stride_k for flat index `i` over `shape`. */
function offsetExpr(shape: number[], strides: number[], offset: number): string {
  const terms: string[] = offset ? [`${offset}i`] : [];
  let inner = 1;
  for (let k = shape.length - 1; k >= 0; k--) {
    const coord = k === 0
      ? (inner === 1 ? "i" : `(i / ${inner}u)`)
      : inner === 1
      ? `(i % ${shape[k]}u)`
      : `((i / ${inner}u) % ${shape[k]}u)`;
    if (strides[k] !== 0) {
      terms.push(strides[k] === 1 ? `i32(${coord})` : `i32(${coord}) * (${strides[k]}i)`);
    }
    inner *= shape[k];
  }
  return terms.length ? terms.join(" + ") : "0i";
}

interface Collapsed {
  shape: number[];
  src: number[];
  dst: number[];
  srcOffset: number;
  dstOffset: number;
}

/** The same copy in units of 4 elements when both views move whole aligned runs of 4 (vec4
 * loads and stores: a plain copy reaches far less bandwidth one scalar at a time). */
function vectorised(c: Collapsed): Collapsed | null {
  const last = c.shape.length - 1;
  const aligned = (strides: number[]) =>
    strides.every((s, k) => (k === last ? s === 1 : s % 4 === 0));
  if (
    last < 0 || c.shape[last] % 4 !== 0 || c.srcOffset % 4 !== 0 || c.dstOffset % 4 !== 0 ||
    !aligned(c.src) || !aligned(c.dst)
  ) return null;
  const shape = c.shape.map((n, k) => (k === last ? n / 4 : n));
  // A run of exactly 4 becomes an axis of length 1: drop it.
  const keep = (_: number, k: number) => shape[k] > 1;
  const quarter = (strides: number[]) =>
    strides.map((s, k) => (k === last ? 1 : s / 4)).filter(keep);
  return {
    shape: shape.filter((n) => n > 1),
    src: quarter(c.src),
    dst: quarter(c.dst),
    srcOffset: c.srcOffset / 4,
    dstOffset: c.dstOffset / 4,
  };
}

/** dst[dst view] = src[src view] over `shape`. The output buffer is written only inside the
 * view, so several copies can fill one tensor (concat, interleave). */
function stridedCopyKernelGen(spec: StridedCopySpec): Kernel {
  const type = spec.type ?? "f32";
  const scalar = { ...collapse(spec), srcOffset: spec.src.offset, dstOffset: spec.dst.offset };
  const vec = vectorised(scalar);
  const c = vec ?? scalar;
  const elem = vec ? `vec4<${type}>` : type;
  const n = prod(c.shape);
  const contiguous = (s: number[]) => s.length === 0 || (s.length === 1 && s[0] === 1);
  const index = (strides: number[], offset: number) =>
    contiguous(strides) ? `i + ${offset}u` : `u32(${offsetExpr(c.shape, strides, offset)})`;
  const k = kernel1d(
    spec.name,
    [ro("src", elem), rw("dst", elem)],
    n,
    `dst[${index(c.dst, c.dstOffset)}] = src[${index(c.src, c.srcOffset)}];`,
  );
  // A piece of a concatenation or a slice moves its elements, not the buffers it binds.
  const bytes = prod(spec.shape) * 4;
  return { ...k, touched: [bytes, bytes] };
}

export type PadMode = "zeros" | "replicate";

export interface PadSpec {
  /** Leading axes flattened into one (e.g. N·C). */
  outer: number;
  h: number;
  w: number;
  /** Padding per side; negative values crop. */
  left: number;
  right: number;
  top: number;
  bottom: number;
  mode: PadMode;
  type?: StorageType;
}

export function paddedSize(s: PadSpec): [number, number] {
  return [s.h + s.top + s.bottom, s.w + s.left + s.right];
}

/** Padding (or cropping) of the last two axes: each output pixel reads its source pixel,
 * clamped to the border (replicate) or zero outside it. */
function padKernelGen(s: PadSpec): Kernel {
  const [ho, wo] = paddedSize(s);
  const n = s.outer * ho * wo;
  const type = s.type ?? "f32";
  const zero = type === "f32" ? "0.0" : type === "u32" ? "0u" : "0i";
  const body = s.mode === "replicate"
    ? `  let ih = clamp(oh - (${s.top}), 0, ${s.h - 1});
  let iw = clamp(ow - (${s.left}), 0, ${s.w - 1});
  out[i] = x[base + u32(ih * ${s.w} + iw)];`
    : `  let ih = oh - (${s.top});
  let iw = ow - (${s.left});
  if (ih < 0 || ih >= ${s.h} || iw < 0 || iw >= ${s.w}) { out[i] = ${zero}; return; }
  out[i] = x[base + u32(ih * ${s.w} + iw)];`;
  return kernel1d(
    `pad_${s.mode}`,
    [ro("x", type), rw("out", type)],
    n,
    `let base = (i / ${ho * wo}u) * ${s.h * s.w}u;
  let oh = i32((i / ${wo}u) % ${ho}u);
  let ow = i32(i % ${wo}u);
${body}`,
  );
}

/** Gradient of padKernel w.r.t. its input, as a gather: each input pixel sums the output pixels
 * that read it (one for interior pixels, a border strip for replicated edges). */
function padGradKernelGen(s: PadSpec): Kernel {
  const [ho, wo] = paddedSize(s);
  const n = s.outer * s.h * s.w;
  // Output rows reading input row r: r + top, widened to the whole padding strip at an edge
  // under replicate; clipped to the output.
  const range = (v: string, size: number, outSize: number, before: number) =>
    s.mode === "replicate"
      ? `max(select(${v} + (${before}), 0, ${v} == 0), 0);
  let ${v}_hi = min(select(${v} + (${before}), ${outSize - 1}, ${v} == ${size - 1}), ${
        outSize - 1
      });`
      : `max(${v} + (${before}), 0);
  let ${v}_hi = min(${v} + (${before}), ${outSize - 1});`;
  return kernel1d(
    `pad_${s.mode}_grad`,
    [ro("g"), rw("dx")],
    n,
    `let base = (i / ${s.h * s.w}u) * ${ho * wo}u;
  let ih = i32((i / ${s.w}u) % ${s.h}u);
  let iw = i32(i % ${s.w}u);
  let ih_lo = ${range("ih", s.h, ho, s.top)}
  let iw_lo = ${range("iw", s.w, wo, s.left)}
  var acc = 0.0;
  for (var oh = ih_lo; oh <= ih_hi; oh++) {
    for (var ow = iw_lo; ow <= iw_hi; ow++) { acc += g[base + u32(oh * ${wo} + ow)]; }
  }
  dx[i] = acc;`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const stridedCopyKernel = cached(stridedCopyKernelGen);
export const padKernel = cached(padKernelGen);
export const padGradKernel = cached(padGradKernelGen);
