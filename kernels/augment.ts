// Training augmentation on the GPU: per sample a rotation by k·90° or by any angle, and
// horizontal / vertical flips, identical for A, B and the label, an optional exchange of A and B
// (Open-CD's MultiImgExchangeTime), then per image a photometric distortion (brightness,
// contrast, saturation) and the model's input normalisation. Parameters come per sample from a
// small f32 tensor so the kernel text stays the same every step.
//
// An angle rotation follows mmcv.imrotate as Open-CD's MultiImgRandomRotate / RotFlip call it:
// centre ((S − 1)/2, (S − 1)/2), positive degrees turn clockwise, output size kept; the images
// are sampled bilinearly with 0 outside (OpenCV's BORDER_CONSTANT, border_value 0), the label by
// nearest neighbour with 255 (ignored) outside. OpenCV quantises the bilinear position to 1/32
// pixel and rounds to uint8; here it is exact float.

import { cached, f, type Kernel, kernel1d, ro, rw } from "./common.ts";

/** Per-sample parameter layout (floats): rot k, flip x, flip y, then brightness, contrast,
 * saturation for A and for B, then the rotation angle in degrees (0: none; the quarter turn k is
 * ignored when it is not 0) and the A/B exchange (1: swap). */
export const AUG_PARAMS = 11;

export interface AugmentSpec {
  batch: number;
  size: number;
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

/** WGSL: the flips are applied last, so undo them first (row, col of the rotated image); then
 * the quarter turn's integer source, or the angle rotation's float source (row, col). */
function sourceOf(size: number): string {
  const s1 = size - 1;
  const c = f(s1 / 2);
  return `
fn unflip(p: u32, y0: u32, x0: u32) -> vec2<u32> {
  var y = y0;
  var x = x0;
  if (prm[p * ${AUG_PARAMS}u + 2u] > 0.5) { y = ${s1}u - y; }
  if (prm[p * ${AUG_PARAMS}u + 1u] > 0.5) { x = ${s1}u - x; }
  return vec2<u32>(y, x);
}
fn quarter(p: u32, yx: vec2<u32>) -> vec2<u32> {
  let y = yx.x;
  let x = yx.y;
  let k = u32(prm[p * ${AUG_PARAMS}u]);
  if (k == 1u) { return vec2<u32>(x, ${s1}u - y); }
  if (k == 2u) { return vec2<u32>(${s1}u - y, ${s1}u - x); }
  if (k == 3u) { return vec2<u32>(${s1}u - x, y); }
  return vec2<u32>(y, x);
}
// cv2.getRotationMatrix2D(centre, −θ) inverted: source = centre + R(−θ)⁻¹·(output − centre).
fn rotated(deg: f32, yx: vec2<u32>) -> vec2<f32> {
  let a = -deg * ${f(Math.PI / 180)};
  let ca = cos(a);
  let sa = sin(a);
  let dy = f32(yx.x) - ${c};
  let dx = f32(yx.y) - ${c};
  return vec2<f32>(${c} + sa * dx + ca * dy, ${c} + ca * dx - sa * dy);
}`;
}

/** WGSL: an RGB pixel of raw image \`src\` (sample p) at an integer (row, col), and bilinearly at
 * a float one with 0 outside. */
function samplersOf(src: string, size: number): string {
  const plane = size * size;
  return `
fn rgb_${src}(p: u32, yx: vec2<u32>) -> vec3<f32> {
  let base = p * ${3 * plane}u + yx.x * ${size}u + yx.y;
  return vec3<f32>(${src}[base], ${src}[base + ${plane}u], ${src}[base + ${2 * plane}u]);
}
fn tap_${src}(p: u32, y: i32, x: i32) -> vec3<f32> {
  if (y < 0 || x < 0 || y >= ${size} || x >= ${size}) { return vec3<f32>(0.0); }
  return rgb_${src}(p, vec2<u32>(u32(y), u32(x)));
}
fn bilinear_${src}(p: u32, s: vec2<f32>) -> vec3<f32> {
  let f0 = floor(s);
  let w = s - f0;
  let y = i32(f0.x);
  let x = i32(f0.y);
  let top = mix(tap_${src}(p, y, x), tap_${src}(p, y, x + 1), w.y);
  let bottom = mix(tap_${src}(p, y + 1, x), tap_${src}(p, y + 1, x + 1), w.y);
  return mix(top, bottom, w.x);
}`;
}

/** Images: inputs raw A, B in [0, 1] [B, 3, S, S] and params; outputs normalised A, B. */
function augmentImagesKernelGen(spec: AugmentSpec): Kernel {
  const { batch, size } = spec;
  const plane = size * size;
  const n = batch * plane;
  const norm = (c: number) => `(v${c} - ${f(spec.mean[c])}) * ${f(1 / spec.std[c])}`;
  const image = (src: string, dst: string, off: number) => `
  {
    let bri = prm[p * ${AUG_PARAMS}u + ${3 + off}u];
    let con = prm[p * ${AUG_PARAMS}u + ${4 + off}u];
    let sat = prm[p * ${AUG_PARAMS}u + ${5 + off}u];
    var rgb = ${src};
    rgb = (rgb + vec3<f32>(bri)) * con;
    let grey = dot(rgb, vec3<f32>(0.299, 0.587, 0.114));
    rgb = clamp(mix(vec3<f32>(grey), rgb, sat), vec3<f32>(0.0), vec3<f32>(1.0));
    let v0 = rgb.x; let v1 = rgb.y; let v2 = rgb.z;
    ${dst}[o] = ${norm(0)};
    ${dst}[o + ${plane}u] = ${norm(1)};
    ${dst}[o + ${2 * plane}u] = ${norm(2)};
  }`;
  return kernel1d(
    "augment_images",
    [ro("ra"), ro("rb"), ro("prm"), rw("oa"), rw("ob")],
    n,
    `let p = i / ${plane}u;
  let r = i % ${plane}u;
  let yx = unflip(p, r / ${size}u, r % ${size}u);
  let deg = prm[p * ${AUG_PARAMS}u + 9u];
  var va: vec3<f32>;
  var vb: vec3<f32>;
  if (deg != 0.0) {
    let s = rotated(deg, yx);
    va = bilinear_ra(p, s);
    vb = bilinear_rb(p, s);
  } else {
    let s = quarter(p, yx);
    va = rgb_ra(p, s);
    vb = rgb_rb(p, s);
  }
  if (prm[p * ${AUG_PARAMS}u + 10u] > 0.5) {
    let t = va;
    va = vb;
    vb = t;
  }
  let o = p * ${3 * plane}u + r;
${image("va", "oa", 0)}
${image("vb", "ob", 3)}`,
    `${sourceOf(size)}
${samplersOf("ra", size)}
${samplersOf("rb", size)}`,
  );
}

/** Labels (u32 [B, S, S]): the same geometry (no exchange: a change mask is symmetric), no
 * photometry. */
function augmentLabelsKernelGen(spec: AugmentSpec): Kernel {
  const { batch, size } = spec;
  const plane = size * size;
  const n = batch * plane;
  return kernel1d(
    "augment_labels",
    [ro("lab", "u32"), ro("prm"), rw("out", "u32")],
    n,
    `let p = i / ${plane}u;
  let r = i % ${plane}u;
  let yx = unflip(p, r / ${size}u, r % ${size}u);
  let deg = prm[p * ${AUG_PARAMS}u + 9u];
  if (deg != 0.0) {
    // Nearest neighbour (OpenCV rounds the source position), 255 = ignored outside.
    let s = floor(rotated(deg, yx) + vec2<f32>(0.5));
    if (s.x < 0.0 || s.y < 0.0 || s.x > ${f(size - 1)} || s.y > ${f(size - 1)}) {
      out[i] = 255u;
    } else {
      out[i] = lab[p * ${plane}u + u32(s.x) * ${size}u + u32(s.y)];
    }
    return;
  }
  let s = quarter(p, yx);
  out[i] = lab[p * ${plane}u + s.x * ${size}u + s.y];`,
    `${sourceOf(size)}`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const augmentImagesKernel = cached(augmentImagesKernelGen);
export const augmentLabelsKernel = cached(augmentLabelsKernelGen);
