// Winograd F(4×4, 3×3) and F(6×6, 3×3) (Lavin & Gray 2016) as WGSL algebra: the transform
// matrices, the generator of unrolled L · X · Rᵀ products and the bounds-checked reads of a tile's
// patch that the weight-gradient (conv2d_winograd_wgrad.ts), the GEMM-based forward
// (conv2d_winograd4.ts) and the fused (conv2d_winograd4_fused.ts, F(4×4) only) kernels share.

/** Lavin & Gray's F(4×4, 3×3) matrices (interpolation points 0, ±1, ±2, ∞). */
export const BT = [
  [4, 0, -5, 0, 1, 0],
  [0, -4, -4, 1, 1, 0],
  [0, 4, -4, -1, 1, 0],
  [0, -2, -1, 2, 1, 0],
  [0, 2, -1, -2, 1, 0],
  [0, 4, 0, -5, 0, 1],
];
export const G = [
  [1 / 4, 0, 0],
  [-1 / 6, -1 / 6, -1 / 6],
  [-1 / 6, 1 / 6, -1 / 6],
  [1 / 24, 1 / 12, 1 / 6],
  [1 / 24, -1 / 12, 1 / 6],
  [0, 0, 1],
];
export const AT = [
  [1, 1, 1, 1, 1, 0],
  [0, 1, -1, 2, -2, 0],
  [0, 1, 1, 4, 4, 0],
  [0, 1, -1, 8, -8, 1],
];

/** F(6×6, 3×3) on the points 0, ±1, ±2, ±½, ∞: 64 products per 6×6 output tile and channel
 * pair (1.78 per output where F(4×4) has 2.25), and 1.78 transformed elements per output pixel to
 * write and read where F(4×4) has 2.25. Its larger transform coefficients (21/4, 17/4, 32/45)
 * roughly double F(4×4)'s f32 rounding error (about 6e-6 against 3e-6 of the output's scale over
 * 256 channels, both against direct f32's 6e-7). */
const BT6 = [
  [1, 0, -21 / 4, 0, 21 / 4, 0, -1, 0],
  [0, 1, 1, -17 / 4, -17 / 4, 1, 1, 0],
  [0, -1, 1, 17 / 4, -17 / 4, -1, 1, 0],
  [0, 1 / 2, 1 / 4, -5 / 2, -5 / 4, 2, 1, 0],
  [0, -1 / 2, 1 / 4, 5 / 2, -5 / 4, -2, 1, 0],
  [0, 2, 4, -5 / 2, -5, 1 / 2, 1, 0],
  [0, -2, 4, 5 / 2, -5, -1 / 2, 1, 0],
  [0, -1, 0, 21 / 4, 0, -21 / 4, 0, 1],
];
const G6 = [
  [1, 0, 0],
  [-2 / 9, -2 / 9, -2 / 9],
  [-2 / 9, 2 / 9, -2 / 9],
  [1 / 90, 1 / 45, 2 / 45],
  [1 / 90, -1 / 45, 2 / 45],
  [32 / 45, 16 / 45, 8 / 45],
  [32 / 45, -16 / 45, 8 / 45],
  [0, 0, 1],
];
const AT6 = [
  [1, 1, 1, 1, 1, 1, 1, 0],
  [0, 1, -1, 2, -2, 1 / 2, -1 / 2, 0],
  [0, 1, 1, 4, 4, 1 / 4, 1 / 4, 0],
  [0, 1, -1, 8, -8, 1 / 8, -1 / 8, 0],
  [0, 1, 1, 16, 16, 1 / 16, 1 / 16, 0],
  [0, 1, -1, 32, -32, 1 / 32, -1 / 32, 1],
];

/** The output tile edge of a Winograd form around the GEMM: F(4×4) or F(6×6). */
export type WinoTile = 4 | 6;

/** One form's matrices: output tile m, input patch α = m + 2, α² transform elements. */
export interface WinoScheme {
  tile: WinoTile;
  alpha: number;
  elements: number;
  BT: number[][];
  G: number[][];
  AT: number[][];
}

const F4: WinoScheme = { tile: 4, alpha: 6, elements: 36, BT, G, AT };
const F6: WinoScheme = { tile: 6, alpha: 8, elements: 64, BT: BT6, G: G6, AT: AT6 };

export const winoScheme = (tile: WinoTile = 4): WinoScheme => (tile === 6 ? F6 : F4);

/** Output tiles of F(tile × tile) along y and x, and over `batch` images of an outH × outW
 * output. */
export function winoTiles(batch: number, outH: number, outW: number, tile: WinoTile = 4) {
  const th = Math.ceil(outH / tile), tw = Math.ceil(outW / tile);
  return { th, tw, t: batch * th * tw };
}

/** Output tiles of F(4×4) (the fused kernels' only form). */
export const tilesF4 = (batch: number, outH: number, outW: number) =>
  winoTiles(batch, outH, outW, 4);

/** F(4×4)'s transform elements (6×6) and output tile edge. */
export const WINO4_ELEMENTS = 36;
export const TILE = 4;

/** Σ c_k·term_k as WGSL, zero coefficients skipped and ±1 written without a product. */
function lin(coefs: number[], terms: string[]): string {
  const parts: string[] = [];
  coefs.forEach((c, k) => {
    if (c === 0) return;
    const mag = Math.abs(c);
    const t = mag === 1
      ? terms[k]
      : `${Number.isInteger(mag) ? mag.toFixed(1) : mag} * ${terms[k]}`;
    parts.push(`${parts.length ? (c < 0 ? " - " : " + ") : (c < 0 ? "-" : "")}${t}`);
  });
  return parts.length ? `(${parts.join("")})` : "0.0";
}

/** WGSL computing out = L · X · Rᵀ for named scalars: X is rows×cols named `${x}${i}_${j}`,
 * L is [p][rows], R is [q][cols]; results are `${out}${i}_${j}`. */
export function sandwich(
  x: string,
  out: string,
  l: number[][],
  r: number[][],
  cols: number,
): string {
  const rows = l[0].length, lines: string[] = [];
  for (let i = 0; i < l.length; i++) {
    for (let j = 0; j < cols; j++) {
      const terms = Array.from({ length: rows }, (_, k) => `${x}${k}_${j}`);
      lines.push(`let h${out}${i}_${j} = ${lin(l[i], terms)};`);
    }
  }
  for (let i = 0; i < l.length; i++) {
    for (let j = 0; j < r.length; j++) {
      const terms = Array.from({ length: cols }, (_, k) => `h${out}${i}_${k}`);
      lines.push(`let ${out}${i}_${j} = ${lin(r[j], terms)};`);
    }
  }
  return lines.join("\n  ");
}

export const transpose = (m: number[][]) => m[0].map((_, j) => m.map((r) => r[j]));

/** WGSL `fn tap(ok, base, q)` (or `name`): array `src`'s element base + q, or 0 where `ok` is
 * false (the index is clamped first, so a padded tap never reads outside the array). */
export function tapFn(src: string, name = "tap"): string {
  return `fn ${name}(ok: bool, base: u32, q: i32) -> f32 {
  return select(0.0, ${src}[select(0u, base + u32(q), ok)], ok);
}`;
}

/** WGSL reading a size×size patch at (y0, x0) of an H×W plane starting at `base` into scalars
 * `d${r}_${c}`, zero outside the plane (and wherever `guard` is false, when given), through
 * the tap function `tap` (tapFn's name). */
export function patchReads(size: number, H: number, W: number, guard = "", tap = "tap"): string[] {
  const lines: string[] = [];
  for (let c = 0; c < size; c++) lines.push(`let cx${c} = u32(x0 + ${c}) < ${W}u;`);
  for (let r = 0; r < size; r++) {
    lines.push(`let ry${r} = u32(y0 + ${r}) < ${H}u;`);
    for (let c = 0; c < size; c++) {
      const ok = `${guard ? `${guard} && ` : ""}ry${r} && cx${c}`;
      lines.push(`let d${r}_${c} = ${tap}(${ok}, base, (y0 + ${r}) * ${W} + x0 + ${c});`);
    }
  }
  return lines;
}

/** WGSL reading channel `c`'s size×size patch at (y0, x0) into scalars `d${r}_${c}` when the
 * channels are the parts of a concatenation, one binding each (`parts[k]` channels, read through
 * tap functions `${tap}${k}` from tapFn): the part holding `c` is read, zero where `guard`
 * is false. `c` past the last part reads the last part's last channel (guarded off). Scalars
 * `n` (the image), `c`, `y0` and `x0` are in scope. */
export function partPatchReads(
  parts: readonly number[],
  size: number,
  H: number,
  W: number,
  guard: string,
  tap = "tap",
): string[] {
  const lines: string[] = [];
  for (let r = 0; r < size; r++) {
    for (let q = 0; q < size; q++) lines.push(`var d${r}_${q} = 0.0;`);
  }
  let start = 0;
  parts.forEach((channels, k) => {
    const last = k === parts.length - 1;
    const head = k === 0
      ? (last ? "{" : `if (c < ${start + channels}u) {`)
      : last
      ? "} else {"
      : `} else if (c < ${start + channels}u) {`;
    const local = last ? `min(c - ${start}u, ${channels - 1}u)` : `c - ${start}u`;
    const reads = patchReads(size, H, W, guard, `${tap}${k}`).map((l) =>
      l.replace(/^let (d\d+_\d+) = /, "$1 = ")
    );
    lines.push(head, `  let base = (n * ${channels}u + ${local}) * ${H * W}u;`, ...reads);
    start += channels;
  });
  lines.push("}");
  return lines;
}
