// Bilinear grid sampling as PyTorch's grid_sample(align_corners=True, padding_mode="zeros"):
// x [B, C, H, W], grid [B, Ho, Wo, 2] holding (x, y) in [-1, 1], out [B, C, Ho, Wo].
// One thread per sampling point loops over the channels, so the corner weights are computed once.

import { type Binding, cached, f, type Kernel, kernel1d, ro, rw } from "./common.ts";

export interface GridSampleSpec {
  batch: number;
  channels: number;
  h: number;
  w: number;
  outH: number;
  outW: number;
}

/** WGSL of `fn sample_at(p: u32) -> Sample` for sampling point p: the four corner offsets
 * within a plane (nw, ne, sw, se; 0 when outside), their weights (0 when outside), the mask
 * of corners inside, and the fractional position. */
function sampleFn(s: GridSampleSpec): string {
  return `struct Sample { off: vec4<u32>, w: vec4<f32>, inside: vec4<f32>, fx: f32, fy: f32 }
fn sample_at(p: u32) -> Sample {
  let ix = (grid[2u * p] + 1.0) / 2.0 * ${f(s.w - 1)};
  let iy = (grid[2u * p + 1u] + 1.0) / 2.0 * ${f(s.h - 1)};
  let x0 = floor(ix);
  let y0 = floor(iy);
  let fx = ix - x0;
  let fy = iy - y0;
  let xs = vec4<i32>(i32(x0)) + vec4<i32>(0, 1, 0, 1);
  let ys = vec4<i32>(i32(y0)) + vec4<i32>(0, 0, 1, 1);
  let ok = (xs >= vec4<i32>(0)) & (xs < vec4<i32>(${s.w})) & (ys >= vec4<i32>(0)) &
    (ys < vec4<i32>(${s.h}));
  let inside = select(vec4<f32>(0.0), vec4<f32>(1.0), ok);
  let off = vec4<u32>(select(vec4<i32>(0), ys * ${s.w} + xs, ok));
  let w = vec4<f32>((1.0 - fx) * (1.0 - fy), fx * (1.0 - fy), (1.0 - fx) * fy, fx * fy) * inside;
  return Sample(off, w, inside, fx, fy);
}`;
}

interface Layout {
  points: number;
  pointsPerImage: number;
  plane: number;
}

function layout(s: GridSampleSpec): Layout {
  return { points: s.batch * s.outH * s.outW, pointsPerImage: s.outH * s.outW, plane: s.h * s.w };
}

/** A kernel with one thread per sampled point: the point index p, its batch b and pixel q,
 * and its sample `sp`, then `body`; `decls` (besides the sampler) before the entry point. */
function pointKernel(
  s: GridSampleSpec,
  name: string,
  bindings: Binding[],
  body: string,
  decls = "",
): Kernel {
  const l = layout(s);
  const lets = `let p = i;
  let b = p / ${l.pointsPerImage}u;
  let q = p % ${l.pointsPerImage}u;
  let sp = sample_at(p);`;
  return kernel1d(name, bindings, l.points, `${lets}\n${body}`, sampleFn(s) + decls, 64);
}

function gridSampleKernelGen(s: GridSampleSpec): Kernel {
  const l = layout(s);
  return pointKernel(
    s,
    "grid_sample",
    [ro("x"), ro("grid"), rw("out")],
    `  for (var c = 0u; c < ${s.channels}u; c++) {
    let base = (b * ${s.channels}u + c) * ${l.plane}u;
    let v = vec4<f32>(x[base + sp.off.x], x[base + sp.off.y], x[base + sp.off.z],
      x[base + sp.off.w]);
    out[(b * ${s.channels}u + c) * ${l.pointsPerImage}u + q] = dot(v, sp.w);
  }`,
  );
}

/** Gradient w.r.t. x: each point scatters grad · weight into its four corners with a
 * compare-and-swap float add (the sum order varies between runs, so the last bits may too).
 * `dx` must be zeroed first. */
function gridSampleGradInputKernelGen(s: GridSampleSpec): Kernel {
  const l = layout(s);
  return pointKernel(
    s,
    "grid_sample_grad_x",
    [ro("grid"), ro("g"), rw("dx", "atomic<u32>", { dtype: "f32" })],
    `  for (var c = 0u; c < ${s.channels}u; c++) {
    let base = (b * ${s.channels}u + c) * ${l.plane}u;
    let gv = g[(b * ${s.channels}u + c) * ${l.pointsPerImage}u + q];
    if (gv == 0.0) { continue; }
    for (var k = 0u; k < 4u; k++) {
      if (sp.w[k] != 0.0) { add_to(base + sp.off[k], gv * sp.w[k]); }
    }
  }`,
    `
fn add_to(i: u32, v: f32) {
  var old = atomicLoad(&dx[i]);
  loop {
    let r = atomicCompareExchangeWeak(&dx[i], old, bitcast<u32>(bitcast<f32>(old) + v));
    if (r.exchanged) { break; }
    old = r.old_value;
  }
}`,
  );
}

/** Gradient w.r.t. the grid: per point, the channel sum of grad · ∂out/∂(ix, iy), times the
 * unnormalisation factors (W−1)/2 and (H−1)/2. Deterministic (a gather). */
function gridSampleGradGridKernelGen(s: GridSampleSpec): Kernel {
  const l = layout(s);
  return pointKernel(
    s,
    "grid_sample_grad_grid",
    [ro("x"), ro("grid"), ro("g"), rw("dgrid")],
    `  // d out / d ix and d out / d iy are dot products of the corner values with these.
  let dix = vec4<f32>(-(1.0 - sp.fy), 1.0 - sp.fy, -sp.fy, sp.fy);
  let diy = vec4<f32>(-(1.0 - sp.fx), -sp.fx, 1.0 - sp.fx, sp.fx);
  var gx = 0.0;
  var gy = 0.0;
  for (var c = 0u; c < ${s.channels}u; c++) {
    let base = (b * ${s.channels}u + c) * ${l.plane}u;
    let v = vec4<f32>(x[base + sp.off.x], x[base + sp.off.y], x[base + sp.off.z],
      x[base + sp.off.w]) * sp.inside;
    let gv = g[(b * ${s.channels}u + c) * ${l.pointsPerImage}u + q];
    gx += gv * dot(v, dix);
    gy += gv * dot(v, diy);
  }
  dgrid[2u * p] = gx * ${f((s.w - 1) / 2)};
  dgrid[2u * p + 1u] = gy * ${f((s.h - 1) / 2)};`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const gridSampleKernel = cached(gridSampleKernelGen);
export const gridSampleGradInputKernel = cached(gridSampleGradInputKernelGen);
export const gridSampleGradGridKernel = cached(gridSampleGradGridKernelGen);
