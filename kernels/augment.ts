// Training augmentation on the GPU: per sample a rotation by k·90° and horizontal / vertical
// flips, identical for A, B and the label, then per image a photometric distortion (brightness,
// contrast, saturation) and the model's input normalisation. Parameters come per sample from a
// small f32 tensor so the kernel text stays the same every step.

import { cached, f, grid1d, type Kernel } from "./common.ts";

/** Per-sample parameter layout (floats): rot k, flip x, flip y, then brightness, contrast,
 * saturation for A and for B. */
export const AUG_PARAMS = 9;

export interface AugmentSpec {
  batch: number;
  size: number;
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

/** WGSL: source pixel (sy, sx) of output pixel (y, x) for the sample's geometry. */
function sourceOf(size: number): string {
  const s1 = size - 1;
  return `
fn source(p: u32, y0: u32, x0: u32) -> vec2<u32> {
  var y = y0;
  var x = x0;
  if (prm[p * ${AUG_PARAMS}u + 2u] > 0.5) { y = ${s1}u - y; }
  if (prm[p * ${AUG_PARAMS}u + 1u] > 0.5) { x = ${s1}u - x; }
  let k = u32(prm[p * ${AUG_PARAMS}u]);
  if (k == 1u) { return vec2<u32>(x, ${s1}u - y); }
  if (k == 2u) { return vec2<u32>(${s1}u - y, ${s1}u - x); }
  if (k == 3u) { return vec2<u32>(${s1}u - x, y); }
  return vec2<u32>(y, x);
}`;
}

/** Images: inputs raw A, B in [0, 1] [B, 3, S, S] and params; outputs normalised A, B. */
function augmentImagesKernelGen(spec: AugmentSpec): Kernel {
  const { batch, size } = spec;
  const plane = size * size;
  const n = batch * plane;
  const g = grid1d(n);
  const norm = (c: number) => `(v${c} - ${f(spec.mean[c])}) * ${f(1 / spec.std[c])}`;
  const image = (src: string, dst: string, off: number) => `
  {
    let bri = prm[p * ${AUG_PARAMS}u + ${3 + off}u];
    let con = prm[p * ${AUG_PARAMS}u + ${4 + off}u];
    let sat = prm[p * ${AUG_PARAMS}u + ${5 + off}u];
    var rgb = vec3<f32>(${src}[base], ${src}[base + ${plane}u], ${src}[base + ${2 * plane}u]);
    rgb = (rgb + vec3<f32>(bri)) * con;
    let grey = dot(rgb, vec3<f32>(0.299, 0.587, 0.114));
    rgb = clamp(mix(vec3<f32>(grey), rgb, sat), vec3<f32>(0.0), vec3<f32>(1.0));
    let v0 = rgb.x; let v1 = rgb.y; let v2 = rgb.z;
    ${dst}[o] = ${norm(0)};
    ${dst}[o + ${plane}u] = ${norm(1)};
    ${dst}[o + ${2 * plane}u] = ${norm(2)};
  }`;
  return {
    name: "augment_images",
    workgroups: g.workgroups,
    code: `@group(0) @binding(0) var<storage, read> ra: array<f32>;
@group(0) @binding(1) var<storage, read> rb: array<f32>;
@group(0) @binding(2) var<storage, read> prm: array<f32>;
@group(0) @binding(3) var<storage, read_write> oa: array<f32>;
@group(0) @binding(4) var<storage, read_write> ob: array<f32>;
${sourceOf(size)}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = ${g.index};
  if (i >= ${n}u) { return; }
  let p = i / ${plane}u;
  let r = i % ${plane}u;
  let s = source(p, r / ${size}u, r % ${size}u);
  let base = p * ${3 * plane}u + s.x * ${size}u + s.y;
  let o = p * ${3 * plane}u + r;
${image("ra", "oa", 0)}
${image("rb", "ob", 3)}
}`,
  };
}

/** Labels (u32 [B, S, S]): the same geometry, no photometry. */
function augmentLabelsKernelGen(spec: AugmentSpec): Kernel {
  const { batch, size } = spec;
  const plane = size * size;
  const n = batch * plane;
  const g = grid1d(n);
  return {
    name: "augment_labels",
    workgroups: g.workgroups,
    code: `@group(0) @binding(0) var<storage, read> lab: array<u32>;
@group(0) @binding(1) var<storage, read> prm: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
${sourceOf(size)}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = ${g.index};
  if (i >= ${n}u) { return; }
  let p = i / ${plane}u;
  let r = i % ${plane}u;
  let s = source(p, r / ${size}u, r % ${size}u);
  out[i] = lab[p * ${plane}u + s.x * ${size}u + s.y];
}`,
  };
}

// Generated once per distinct spec (see cached in common.ts).
export const augmentImagesKernel = cached(augmentImagesKernelGen);
export const augmentLabelsKernel = cached(augmentLabelsKernelGen);
