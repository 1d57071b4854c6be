// 2-D max and average pooling over NCHW, with PyTorch's output sizes (floor or ceil mode) and
// padding rules. Forward: one thread per output. Backward: one thread per input element that
// gathers from the few windows covering it, so overlapping windows need no atomics and the sum
// order is fixed.

import {
  type Binding,
  cached,
  f,
  groupGrid,
  type Kernel,
  kernel,
  kernel1d,
  ro,
  rw,
} from "./common.ts";

export interface Pool2dSpec {
  batch: number;
  channels: number;
  height: number;
  width: number;
  kernel: [number, number];
  stride: [number, number];
  padding: [number, number];
  ceilMode: boolean;
}

/** PyTorch's pooled length: floor or ceil of (in + 2p − k)/s + 1, where in ceil mode the last
 * window must start inside the input or its left padding. */
export function pooledSize(
  inSize: number,
  k: number,
  s: number,
  p: number,
  ceilMode: boolean,
): number {
  const span = inSize + 2 * p - k;
  if (span < 0) throw new Error(`pool: kernel ${k} larger than padded input ${inSize + 2 * p}`);
  let out = (ceilMode ? Math.ceil(span / s) : Math.floor(span / s)) + 1;
  if (ceilMode && (out - 1) * s >= inSize + p) out--;
  return out;
}

export function pooledShape(s: Pool2dSpec): [number, number] {
  return [
    pooledSize(s.height, s.kernel[0], s.stride[0], s.padding[0], s.ceilMode),
    pooledSize(s.width, s.kernel[1], s.stride[1], s.padding[1], s.ceilMode),
  ];
}

export function checkPool(s: Pool2dSpec): void {
  const [kh, kw] = s.kernel, [sh, sw] = s.stride, [ph, pw] = s.padding;
  if (![kh, kw, sh, sw].every((v) => Number.isInteger(v) && v >= 1)) {
    throw new Error(`pool: kernel ${s.kernel} and stride ${s.stride} must be positive integers`);
  }
  if (!(ph >= 0 && pw >= 0 && 2 * ph <= kh && 2 * pw <= kw)) {
    throw new Error(`pool: padding ${s.padding} must be at most half the kernel ${s.kernel}`);
  }
}

/** WGSL decoding output index `i` into plane, oh, ow and the window's first row/column. */
function outputCoords(s: Pool2dSpec, oh: number, ow: number): string {
  return `  let ow = i % ${ow}u;
  let oh = (i / ${ow}u) % ${oh}u;
  let plane = i / ${oh * ow}u;
  let h0 = i32(oh * ${s.stride[0]}u) - ${s.padding[0]};
  let w0 = i32(ow * ${s.stride[1]}u) - ${s.padding[1]};
  let base = plane * ${s.height * s.width}u;`;
}

/** Does any window reach outside the input? (Then taps need bounds checks.) */
function needsBounds(s: Pool2dSpec, oh: number, ow: number): boolean {
  return s.padding[0] > 0 || s.padding[1] > 0 ||
    (oh - 1) * s.stride[0] + s.kernel[0] > s.height ||
    (ow - 1) * s.stride[1] + s.kernel[1] > s.width;
}

/** A checked window spec's output size, thread count (one per output) and the WGSL that skips
 * taps outside the input (empty when no window reaches outside). */
function windowLoop(s: Pool2dSpec) {
  checkPool(s);
  const [oh, ow] = pooledShape(s);
  const bounds = needsBounds(s, oh, ow);
  const tapCheck = bounds
    ? `if (h < 0 || h >= ${s.height} || w < 0 || w >= ${s.width}) { continue; }`
    : "";
  return { oh, ow, n: s.batch * s.channels * oh * ow, bounds, tapCheck };
}

/** The argmax output binding of the max pools, when they record one. */
function argmaxOut(withArgmax: boolean): Binding[] {
  return withArgmax ? [rw("argmax", "u32")] : [];
}

/** Max pooling: inputs x; outputs y and, unless `withArgmax` is false (inference), argmax (u32,
 * index within the plane; the first maximum in row-major order wins, as PyTorch). Padding never
 * wins. */
function maxPool2dKernelGen(s: Pool2dSpec, withArgmax = true): Kernel {
  const { oh, ow, n, tapCheck } = windowLoop(s);
  return kernel1d(
    "max_pool2d",
    [ro("x"), rw("y"), ...argmaxOut(withArgmax)],
    n,
    `${outputCoords(s, oh, ow)}
  var best = -3.4028235e38;
  var at = 0xffffffffu;
  for (var kh = 0; kh < ${s.kernel[0]}; kh++) {
    for (var kw = 0; kw < ${s.kernel[1]}; kw++) {
      let h = h0 + kh;
      let w = w0 + kw;
      ${tapCheck}
      let q = u32(h * ${s.width} + w);
      let v = x[base + q];
      if (v > best || at == 0xffffffffu) {
        best = v;
        at = q;
      }
    }
  }
  y[i] = best;${withArgmax ? "\n  argmax[i] = at;" : ""}`,
  );
}

/** Global max pooling (the window is the whole plane): one workgroup per plane, each thread
 * scanning a strided share (vec4 loads when the plane allows) and a shared-memory tree
 * keeping the first maximum in row-major order, as PyTorch. A one-thread-per-output window
 * loop would give a 512×512 plane to a single thread. Outputs y and argmax as maxPool2dKernel. */
function globalMaxPoolKernelGen(planes: number, n: number, withArgmax = true): Kernel {
  const g = groupGrid(planes);
  const vec = n % 4 === 0;
  const m = vec ? n / 4 : n;
  const WG = 256;
  const take = (v: string) => `${v} > best || at == 0xffffffffu`;
  const scan = vec
    ? `let v = xs[base + k];
    let q = k * 4u;
    if (${take("v.x")}) { best = v.x; at = q; }
    if (${take("v.y")}) { best = v.y; at = q + 1u; }
    if (${take("v.z")}) { best = v.z; at = q + 2u; }
    if (${take("v.w")}) { best = v.w; at = q + 3u; }`
    : `let v = xs[base + k];
    if (${take("v")}) { best = v; at = k; }`;
  return kernel(
    "global_max_pool",
    [ro("xs", vec ? "vec4<f32>" : "f32"), rw("y"), ...argmaxOut(withArgmax)],
    g.workgroups,
    `var<workgroup> sv: array<f32, ${WG}>;
var<workgroup> si: array<u32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let plane = ${g.index};
  if (plane >= ${planes}u) { return; }
  let base = plane * ${m}u;
  // Threads without elements keep −∞ and index 0xffffffff, so they lose every tie.
  var best = bitcast<f32>(0xff800000u);
  var at = 0xffffffffu;
  for (var k = t; k < ${m}u; k += ${WG}u) {
    ${scan}
  }
  sv[t] = best;
  si[t] = at;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (t < s) {
      let ov = sv[t + s];
      let oi = si[t + s];
      if (ov > sv[t] || (ov == sv[t] && oi < si[t])) {
        sv[t] = ov;
        si[t] = oi;
      }
    }
    workgroupBarrier();
  }
  if (t == 0u) {
    y[plane] = sv[0];${withArgmax ? "\n    argmax[plane] = si[0];" : ""}
  }
}`,
  );
}

/** WGSL loop over the outputs (oh, ow) whose windows cover input (h, w) of this plane; the
 * body sees `o`, the output's flat index, and `ohi`, `owi` as i32. */
function coveringWindows(s: Pool2dSpec, oh: number, ow: number, body: string): string {
  const [kh, kw] = s.kernel, [sh, sw] = s.stride, [ph, pw] = s.padding;
  // oh covers h when oh·s − p ≤ h < oh·s − p + k, i.e. oh ∈ (h + p − k, h + p] / s.
  return `  let hp = h + ${ph};
  let wp = w + ${pw};
  let oh_hi = min(hp / ${sh}, ${oh - 1});
  let ow_hi = min(wp / ${sw}, ${ow - 1});
  let oh_lo = max((hp - ${kh} + ${sh}) / ${sh}, 0);
  let ow_lo = max((wp - ${kw} + ${sw}) / ${sw}, 0);
  for (var ohi = oh_lo; ohi <= oh_hi; ohi++) {
    for (var owi = ow_lo; owi <= ow_hi; owi++) {
      let o = plane * ${oh * ow}u + u32(ohi * ${ow} + owi);
      ${body}
    }
  }`;
}

/** WGSL decoding input index `i` into plane, h, w (i32). */
const INPUT_COORDS = (s: Pool2dSpec) =>
  `  let w = i32(i % ${s.width}u);
  let h = i32((i / ${s.width}u) % ${s.height}u);
  let plane = i / ${s.height * s.width}u;`;

export interface MaxPool2dGradSpec extends Pool2dSpec {
  /** Add into what dx holds (a gradient summed in the write-out: autograd's `into`). */
  accumulate?: boolean;
}

/** Max-pool backward: inputs g (pooled shape), argmax; output dx. */
function maxPool2dGradKernelGen(s: MaxPool2dGradSpec): Kernel {
  checkPool(s);
  const [oh, ow] = pooledShape(s);
  const n = s.batch * s.channels * s.height * s.width;
  const k = kernel1d(
    "max_pool2d_grad",
    [ro("g"), ro("argmax", "u32"), rw("dx")],
    n,
    `${INPUT_COORDS(s)}
  let q = u32(h * ${s.width} + w);
  var acc = 0.0;
${coveringWindows(s, oh, ow, "if (argmax[o] == q) { acc += g[o]; }")}
  dx[i] = ${s.accumulate ? "dx[i] + acc" : "acc"};`,
  );
  // Adding into dx reads it as well as writing it.
  return s.accumulate ? { ...k, touched: [null, null, 8 * n] } : k;
}

export interface AvgPool2dSpec extends Pool2dSpec {
  /** Divide by the whole window including padding (PyTorch's default) or only by the taps
   * inside the input. */
  countIncludePad: boolean;
}

/** WGSL: `div`, the divisor of the window starting at (h0, w0), by PyTorch's rule (windows are
 * clipped to the padded input first; with countIncludePad false, to the input). */
function divisor(s: AvgPool2dSpec): string {
  const [kh, kw] = s.kernel, [ph, pw] = s.padding;
  const hiH = s.countIncludePad ? s.height + ph : s.height;
  const hiW = s.countIncludePad ? s.width + pw : s.width;
  const loH = s.countIncludePad ? `a0` : `max(a0, 0)`;
  const loW = s.countIncludePad ? `b0` : `max(b0, 0)`;
  return `fn divisor(a0: i32, b0: i32) -> f32 {
  let rows = min(a0 + ${kh}, ${hiH}) - ${loH};
  let cols = min(b0 + ${kw}, ${hiW}) - ${loW};
  return f32(rows * cols);
}`;
}

/** Average pooling: inputs x; output y. */
function avgPool2dKernelGen(s: AvgPool2dSpec): Kernel {
  const { oh, ow, n, bounds, tapCheck } = windowLoop(s);
  const div = bounds ? "divisor(h0, w0)" : f(s.kernel[0] * s.kernel[1]);
  return kernel1d(
    "avg_pool2d",
    [ro("x"), rw("y")],
    n,
    `${outputCoords(s, oh, ow)}
  var acc = 0.0;
  for (var kh = 0; kh < ${s.kernel[0]}; kh++) {
    for (var kw = 0; kw < ${s.kernel[1]}; kw++) {
      let h = h0 + kh;
      let w = w0 + kw;
      ${tapCheck}
      acc += x[base + u32(h * ${s.width} + w)];
    }
  }
  y[i] = acc / ${div};`,
    `${divisor(s)}`,
  );
}

/** Average-pool backward: input g (pooled shape); output dx. */
function avgPool2dGradKernelGen(s: AvgPool2dSpec): Kernel {
  checkPool(s);
  const [oh, ow] = pooledShape(s);
  const n = s.batch * s.channels * s.height * s.width;
  const [sh, sw] = s.stride, [ph, pw] = s.padding;
  return kernel1d(
    "avg_pool2d_grad",
    [ro("g"), rw("dx")],
    n,
    `${INPUT_COORDS(s)}
  var acc = 0.0;
${
      coveringWindows(
        s,
        oh,
        ow,
        `acc += g[o] / divisor(ohi * ${sh} - ${ph}, owi * ${sw} - ${pw});`,
      )
    }
  dx[i] = acc;`,
    `${divisor(s)}`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const maxPool2dKernel = cached(maxPool2dKernelGen);
export const maxPool2dGradKernel = cached(maxPool2dGradKernelGen);
export const globalMaxPoolKernel = cached(globalMaxPoolKernelGen);
export const avgPool2dKernel = cached(avgPool2dKernelGen);
export const avgPool2dGradKernel = cached(avgPool2dGradKernelGen);
