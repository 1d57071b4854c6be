// Flash-style attention: softmax(q kᵀ · scale) v without an Lq×Lk matrix in memory.
// Forward: one thread per query row, key/value tiles streamed through workgroup memory, online
// softmax (running max m, running sum l) updated key by key; it saves lse = m + log l per row for
// backward. (Updating once per unrolled block of 8 keys with exp2 ran 2× slower on an H200 at
// MiT-b0's shape, 0.68 vs 0.34 ms: see commit 8e5b6d1 and its revert.)
// Backward recomputes the probabilities tile by tile from lse: one kernel per query row gives dQ
// and D = rowsum(dO ⊙ O); one per key row gives dK and dV, over a slice of the queries when the
// query range is split for parallelism (the slices' partial sums are then added by a reduction).
// Rows are held in vec4 registers with compile-time indices; head sizes that are not multiples
// of 4 are zero-padded on load.

import { type Binding, cached, f, groupGrid, type Kernel, kernel, ro, rw } from "./common.ts";

export interface AttentionSpec {
  /** batch × heads */
  bh: number;
  lq: number;
  lk: number;
  /** Head size of q and k. */
  d: number;
  /** Head size of v (and of the output). */
  dv: number;
  scale: number;
  /** dK and dV in one kernel (1) or two (2: dK, then dV in column chunks); by default two
   * when one thread's k, v, dK and dV rows would not fit its registers. */
  kvPasses?: 1 | 2;
}

/** Largest head size the kernels accept (registers per thread grow with it). */
export const MAX_HEAD = 128;
const NEG_MAX = "-3.4028235e38";
/** Workgroup memory budget per kernel (lavapipe allows 32 KiB, GPUs 48 KiB or more). */
const SMEM_BYTES = 16384;
/** Query rows per forward / dQ workgroup (one thread each). */
const ROWS = 64;

const q4 = (n: number) => Math.ceil(n / 4);

function pow2Floor(x: number): number {
  return 2 ** Math.floor(Math.log2(Math.max(1, x)));
}

/** Rows of a tile that fit the workgroup-memory budget, given vec4s per row (+ extra bytes). */
function tileRows(vec4sPerRow: number, extraBytes = 0): number {
  return Math.max(4, Math.min(64, pow2Floor(SMEM_BYTES / (vec4sPerRow * 16 + extraBytes))));
}

function check(s: AttentionSpec): void {
  for (const [k, v] of Object.entries(s)) {
    if (k !== "scale" && k !== "kvPasses" && (!Number.isInteger(v) || v < 1)) {
      throw new Error(`attention: ${k} = ${v} must be a positive integer`);
    }
  }
  if (s.d > MAX_HEAD || s.dv > MAX_HEAD) {
    throw new Error(`attention: head sizes ${s.d}, ${s.dv} exceed ${MAX_HEAD}`);
  }
}

/** A storage binding for rows of `len` floats: vec4-typed when rows are whole vec4s. */
function rowBinding(name: string, len: number, write = false): Binding {
  return (write ? rw : ro)(name, len % 4 === 0 ? "vec4<f32>" : "f32");
}

/** WGSL helper `ld_<name>(row, c) -> vec4<f32>`: chunk c of a row, zero past the row's end. */
function loader(name: string, len: number): string {
  if (len % 4 === 0) {
    return `fn ld_${name}(row: u32, c: u32) -> vec4<f32> { return ${name}[row * ${
      len / 4
    }u + c]; }`;
  }
  const parts = [0, 1, 2, 3].map((k) =>
    `  if (c * 4u + ${k}u < ${len}u) { r[${k}] = ${name}[i + ${k}u]; }`
  );
  return `fn ld_${name}(row: u32, c: u32) -> vec4<f32> {
  let i = row * ${len}u + c * 4u;
  var r = vec4<f32>(0.0);
${parts.join("\n")}
  return r;
}`;
}

/** WGSL helper `st_<name>(row, c, x)`: store chunk c of a row, dropping the zero padding. */
function storer(name: string, len: number): string {
  if (len % 4 === 0) {
    return `fn st_${name}(row: u32, c: u32, x: vec4<f32>) { ${name}[row * ${len / 4}u + c] = x; }`;
  }
  const parts = [0, 1, 2, 3].map((k) =>
    `  if (c * 4u + ${k}u < ${len}u) { ${name}[i + ${k}u] = x[${k}]; }`
  );
  return `fn st_${name}(row: u32, c: u32, x: vec4<f32>) {
  let i = row * ${len}u + c * 4u;
${parts.join("\n")}
}`;
}

/** Statements repeated for c = 0..n-1 (compile-time indices: no runtime bounds checks). */
function each(n: number, line: (c: number) => string, indent = "  "): string {
  return Array.from({ length: n }, (_, c) => indent + line(c)).join("\n");
}

/** Σ_c dot(a_c, b(c)) as one expression. */
function dotSum(n: number, a: (c: number) => string, b: (c: number) => string): string {
  return Array.from({ length: n }, (_, c) => `dot(${a(c)}, ${b(c)})`).join(" + ");
}

/** Cooperative load of rows [first, first + rows) of `name` (rows of `len`, `total` rows per
 * head, head `bh`) into workgroup array `tile`; rows past the end become zeros. */
function tileLoad(
  tile: string,
  name: string,
  len: number,
  rows: number,
  total: number,
  first: string,
  threads: number,
): string {
  const n4 = q4(len);
  return `  for (var e = lid; e < ${rows * n4}u; e += ${threads}u) {
    let r = ${first} + e / ${n4}u;
    var x = vec4<f32>(0.0);
    if (r < ${total}u) { x = ld_${name}(bh * ${total}u + r, e % ${n4}u); }
    ${tile}[e] = x;
  }`;
}

/** The query-row kernels' entry (forward, dQ): key and value tiles in workgroup memory, one
 * thread per query row of a ROWS-row block (`row` clamped to the last query; threads past it
 * compute but do not store), and the row's q, pre-scaled, in registers q0… */
function queryRowEntry(s: AttentionSpec, nqb: number, index: string): string {
  const D4 = q4(s.d), V4 = q4(s.dv), BK = tileRows(D4 + V4);
  return `var<workgroup> ks: array<vec4<f32>, ${BK * D4}>;
var<workgroup> vs: array<vec4<f32>, ${BK * V4}>;
@compute @workgroup_size(${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = ${index};
  if (g >= ${nqb * s.bh}u) { return; }
  let bh = g / ${nqb}u;
  let r = (g % ${nqb}u) * ${ROWS}u + lid;
  let row = bh * ${s.lq}u + min(r, ${s.lq - 1}u);
${each(D4, (c) => `let q${c} = ld_q(row, ${c}u) * ${f(s.scale)};`)}`;
}

/** The query-row kernels' walk over key tiles, opened up to key j's offsets kj (ks) and vj (vs);
 * the caller closes the key loop, then the tile loop after a barrier. */
function keyTileLoop(s: AttentionSpec): string {
  const D4 = q4(s.d), V4 = q4(s.dv), BK = tileRows(D4 + V4);
  const nt = Math.ceil(s.lk / BK);
  return `  for (var t = 0u; t < ${nt}u; t++) {
    let k0 = t * ${BK}u;
${tileLoad("ks", "k", s.d, BK, s.lk, "k0", ROWS)}
${tileLoad("vs", "v", s.dv, BK, s.lk, "k0", ROWS)}
    workgroupBarrier();
    let nk = min(${BK}u, ${s.lk}u - k0);
    for (var j = 0u; j < nk; j++) {
      let kj = j * ${D4}u;
      let vj = j * ${V4}u;`;
}

/** Forward. Bindings: q, k, v → o, lse. */
function attentionForwardKernelGen(s: AttentionSpec): Kernel {
  check(s);
  const D4 = q4(s.d), V4 = q4(s.dv);
  const nqb = Math.ceil(s.lq / ROWS);
  const g = groupGrid(nqb * s.bh);
  const bindings = [
    rowBinding("q", s.d),
    rowBinding("k", s.d),
    rowBinding("v", s.dv),
    rowBinding("o", s.dv, true),
    rw("lse"),
  ];
  const code = `${loader("q", s.d)}
${loader("k", s.d)}
${loader("v", s.dv)}
${storer("o", s.dv)}
${queryRowEntry(s, nqb, g.index)}
${each(V4, (c) => `var a${c} = vec4<f32>(0.0);`)}
  var m: f32 = ${NEG_MAX};
  var l: f32 = 0.0;
${keyTileLoop(s)}
      let sc = ${dotSum(D4, (c) => `q${c}`, (c) => `ks[kj + ${c}u]`)};
      if (sc > m) {
        // A new running max rescales what was summed so far.
        let c = exp(m - sc);
        l *= c;
${each(V4, (c) => `a${c} *= c;`, "        ")}
        m = sc;
      }
      let p = exp(sc - m);
      l += p;
${each(V4, (c) => `a${c} += p * vs[vj + ${c}u];`, "      ")}
    }
    workgroupBarrier();
  }
  if (r < ${s.lq}u) {
    let inv = 1.0 / l;
${each(V4, (c) => `st_o(row, ${c}u, a${c} * inv);`, "    ")}
    lse[row] = m + log(l);
  }
}`;
  return kernel("attention_forward", bindings, g.workgroups, code);
}

/** dQ and D = rowsum(dO ⊙ O), one thread per query row. Bindings: q, k, v, o, dout, lse →
 * dq, dlt. */
function attentionBackwardQKernelGen(s: AttentionSpec): Kernel {
  check(s);
  const D4 = q4(s.d), V4 = q4(s.dv);
  const nqb = Math.ceil(s.lq / ROWS);
  const g = groupGrid(nqb * s.bh);
  const bindings = [
    rowBinding("q", s.d),
    rowBinding("k", s.d),
    rowBinding("v", s.dv),
    rowBinding("o", s.dv),
    rowBinding("dout", s.dv),
    ro("lse"),
    rowBinding("dq", s.d, true),
    rw("dlt"),
  ];
  const code = `${loader("q", s.d)}
${loader("k", s.d)}
${loader("v", s.dv)}
${loader("o", s.dv)}
${loader("dout", s.dv)}
${storer("dq", s.d)}
${queryRowEntry(s, nqb, g.index)}
${each(V4, (c) => `let do${c} = ld_dout(row, ${c}u);`)}
  let dl = ${dotSum(V4, (c) => `do${c}`, (c) => `ld_o(row, ${c}u)`)};
  let ls = lse[row];
${each(D4, (c) => `var g${c} = vec4<f32>(0.0);`)}
${keyTileLoop(s)}
      let p = exp(${dotSum(D4, (c) => `q${c}`, (c) => `ks[kj + ${c}u]`)} - ls);
      let dp = ${dotSum(V4, (c) => `do${c}`, (c) => `vs[vj + ${c}u]`)};
      let ds = p * (dp - dl);
${each(D4, (c) => `g${c} += ds * ks[kj + ${c}u];`, "      ")}
    }
    workgroupBarrier();
  }
  if (r < ${s.lq}u) {
${each(D4, (c) => `st_dq(row, ${c}u, g${c} * ${f(s.scale)});`, "    ")}
    dlt[row] = dl;
  }
}`;
  return kernel("attention_backward_q", bindings, g.workgroups, code);
}

export interface KeyValuePlan {
  /** Keys per workgroup (one per thread of a lane). */
  keys: number;
  /** Lanes of `keys` threads that share a key block, each taking every lanes-th query; their
   * dK, dV are summed at the end. More than one only for short key sets (BIT's 4 tokens), which
   * left 28 of 32 threads idle. */
  lanes: number;
  /** Query rows per workgroup-memory tile. */
  tile: number;
  /** Slices the query range is split into (partial dK, dV per slice). */
  splits: number;
  /** Query rows per slice (a multiple of `tile`). */
  perSplit: number;
  /** 1: dK and dV in one kernel; 2: a dK kernel, then a dV kernel over `chunks` column chunks
   * of `chunk` vec4s (each recomputing the probabilities). */
  passes: 1 | 2;
  chunk: number;
  chunks: number;
}

/** Enough workgroups to fill a large GPU; more splits cost partial-sum memory. */
const TARGET_GROUPS = 1024;
const MAX_PARTIAL_FLOATS = 1 << 22;
/** Key sets up to this size get lanes (threads = 64 in all). */
const LANE_KEYS = 16;
/** vec4 registers one thread may hold for its key's rows. CGNet's 32-wide keys with 128-wide
 * values (k, v, dK, dV: 80 vec4) ran the fused kernel at 2 TFLOP/s on an H100 against 7 for
 * the forward: the rows spill. Two passes hold k, v, dK (48) and k, dV (40). */
const KV_REGS = 64;
const PASS_REGS = 48;

/** The largest divisor of n that is at most cap (at least 1). */
function divisorUpTo(n: number, cap: number): number {
  for (let c = Math.min(n, cap); c > 1; c--) if (n % c === 0) return c;
  return 1;
}

/** How the dK/dV kernels divide their work (the op allocates `splits` partial buffers). */
export function keyValuePlan(s: AttentionSpec): KeyValuePlan {
  const D4 = q4(s.d), V4 = q4(s.dv);
  let keys = 32;
  let lanes = 1;
  if (s.lk <= LANE_KEYS) {
    keys = 1;
    while (keys < s.lk) keys *= 2;
    lanes = 64 / keys;
  } else while (keys < s.lk && keys < 64) keys *= 2;
  const tile = tileRows(D4 + V4, 8);
  const groups = s.bh * Math.ceil(s.lk / keys);
  const perRow = s.bh * s.lk * (s.d + s.dv);
  const memCap = Math.max(8, Math.floor(MAX_PARTIAL_FLOATS / perRow));
  const want = Math.max(1, Math.min(Math.ceil(TARGET_GROUPS / groups), memCap));
  const perSplit = Math.ceil(Math.ceil(s.lq / want) / tile) * tile;
  // Two passes only where they relieve the registers: HANet's 128-wide k and v would still
  // hold 96 vec4 in the dK pass, and recompute the probabilities for nothing.
  const passes = s.kvPasses ??
    (2 * (D4 + V4) > KV_REGS && 2 * D4 + V4 <= PASS_REGS ? 2 : 1);
  const chunk = passes === 1 ? V4 : divisorUpTo(V4, Math.max(1, PASS_REGS - D4));
  return {
    keys,
    lanes,
    tile,
    splits: Math.ceil(s.lq / perSplit),
    perSplit,
    passes,
    chunk,
    chunks: V4 / chunk,
  };
}

/** Which gradients a dK/dV kernel computes: both, dK alone, or one chunk of dV's columns. */
type KeyValuePart = "kv" | "k" | "v";

/** dK and/or dV, one thread per key row, over one slice of the queries (and, for dV alone, one
 * chunk of its columns). Bindings: q, k, v, dout, lse, dlt → dk and/or dv (dV alone: q, k,
 * dout, lse → dv; each
 * [splits, bh, lk, ·]; the op sums the slices when splits > 1). */
function attentionBackwardKVKernelGen(s: AttentionSpec, part: KeyValuePart = "kv"): Kernel {
  check(s);
  const D4 = q4(s.d), V4 = q4(s.dv);
  const plan = keyValuePlan(s);
  const { keys: KT, lanes: LN, tile: BQ, splits, perSplit } = plan;
  const wantK = part !== "v", wantV = part !== "k";
  // dV's columns in this kernel: all of them, or one chunk (chosen by the workgroup).
  const VC = part === "v" ? plan.chunk : V4, chunks = part === "v" ? plan.chunks : 1;
  const nkb = Math.ceil(s.lk / KT);
  const TH = KT * LN;
  // With lanes, lane 0 of each key sums the other lanes' dK, dV through `red`, one vec4 at a time.
  const laneSum = (x: string) =>
    `  red[lid] = ${x};
  workgroupBarrier();
  if (lane == 0u) {
    for (var l = 1u; l < ${LN}u; l++) { ${x} += red[l * ${KT}u + lid]; }
  }
  workgroupBarrier();`;
  const reduceLanes = LN === 1 ? "" : [
    ...(wantK ? Array.from({ length: D4 }, (_, c) => laneSum(`gk${c}`)) : []),
    ...(wantV ? Array.from({ length: VC }, (_, c) => laneSum(`gv${c}`)) : []),
  ].join("\n");
  const total = splits * s.bh * nkb * chunks;
  const g = groupGrid(total);
  // dV alone reads neither v nor D (they enter only dK's ds).
  const bindings = [
    rowBinding("q", s.d),
    rowBinding("k", s.d),
    ...(wantK ? [rowBinding("v", s.dv)] : []),
    rowBinding("dout", s.dv),
    ro("lse"),
    ...(wantK ? [ro("dlt")] : []),
    ...(wantK ? [rowBinding("dk", s.d, true)] : []),
    ...(wantV ? [rowBinding("dv", s.dv, true)] : []),
  ];
  // Column c of this kernel's dV chunk is column ck·VC + c of the row.
  const col = (c: number | string) => (VC === V4 ? `${c}u` : `ck * ${VC}u + ${c}u`);
  const doutTile = VC === V4
    ? tileLoad("dos", "dout", s.dv, BQ, s.lq, "q0", TH)
    : `  for (var e = lid; e < ${BQ * VC}u; e += ${TH}u) {
    let r = q0 + e / ${VC}u;
    var x = vec4<f32>(0.0);
    if (r < ${s.lq}u) { x = ld_dout(bh * ${s.lq}u + r, ck * ${VC}u + e % ${VC}u); }
    dos[e] = x;
  }`;
  const code = `${loader("q", s.d)}
${loader("k", s.d)}
${wantK ? loader("v", s.dv) : ""}
${loader("dout", s.dv)}
${wantK ? storer("dk", s.d) : ""}
${wantV ? storer("dv", s.dv) : ""}
var<workgroup> qs: array<vec4<f32>, ${BQ * D4}>;
var<workgroup> dos: array<vec4<f32>, ${BQ * VC}>;
var<workgroup> ls: array<f32, ${BQ}>;
${wantK ? `var<workgroup> dls: array<f32, ${BQ}>;` : ""}
${LN > 1 ? `var<workgroup> red: array<vec4<f32>, ${TH}>;` : ""}
@compute @workgroup_size(${TH})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let gg = ${g.index};
  if (gg >= ${total}u) { return; }
  let ck = gg % ${chunks}u;
  let g = gg / ${chunks}u;
  let split = g / ${s.bh * nkb}u;
  let bh = (g / ${nkb}u) % ${s.bh}u;
  let lane = lid / ${KT}u;
  let j = (g % ${nkb}u) * ${KT}u + lid % ${KT}u;
  let row = bh * ${s.lk}u + min(j, ${s.lk - 1}u);
${each(D4, (c) => `let k${c} = ld_k(row, ${c}u) * ${f(s.scale)};`)}
${wantK ? each(V4, (c) => `let v${c} = ld_v(row, ${c}u);`) : ""}
${wantK ? each(D4, (c) => `var gk${c} = vec4<f32>(0.0);`) : ""}
${wantV ? each(VC, (c) => `var gv${c} = vec4<f32>(0.0);`) : ""}
  let first = split * ${perSplit}u;
  for (var t = 0u; t < ${perSplit / BQ}u; t++) {
    let q0 = first + t * ${BQ}u;
${tileLoad("qs", "q", s.d, BQ, s.lq, "q0", TH)}
${doutTile}
    for (var e = lid; e < ${BQ}u; e += ${TH}u) {
      let r = min(q0 + e, ${s.lq - 1}u);
      ls[e] = lse[bh * ${s.lq}u + r];
${wantK ? `      dls[e] = dlt[bh * ${s.lq}u + r];` : ""}
    }
    workgroupBarrier();
    let nq = min(${BQ}u, max(${s.lq}u, q0) - q0);
    for (var i = ${LN > 1 ? "lane" : "0u"}; i < nq; i += ${LN}u) {
      let qi = i * ${D4}u;
      let oi = i * ${VC}u;
      let p = exp(${dotSum(D4, (c) => `qs[qi + ${c}u]`, (c) => `k${c}`)} - ls[i]);
${wantV ? each(VC, (c) => `gv${c} += p * dos[oi + ${c}u];`, "      ") : ""}
${
    wantK
      ? `      let dp = ${dotSum(V4, (c) => `dos[oi + ${c}u]`, (c) => `v${c}`)};
      let ds = p * (dp - dls[i]);
${each(D4, (c) => `gk${c} += ds * qs[qi + ${c}u];`, "      ")}`
      : ""
  }
    }
    workgroupBarrier();
  }
${reduceLanes}
  if (${LN > 1 ? "lane == 0u && " : ""}j < ${s.lk}u) {
    let dst = split * ${s.bh * s.lk}u + row;
${wantK ? each(D4, (c) => `st_dk(dst, ${c}u, gk${c} * ${f(s.scale)});`, "    ") : ""}
${wantV ? each(VC, (c) => `st_dv(dst, ${col(c)}, gv${c});`, "    ") : ""}
  }
}`;
  const name = part === "kv" ? "attention_backward_kv" : `attention_backward_${part}`;
  return kernel(name, bindings, g.workgroups, code);
}

// Generated once per distinct spec (see cached in common.ts).
export const attentionForwardKernel = cached(attentionForwardKernelGen);
export const attentionBackwardQKernel = cached(attentionBackwardQKernelGen);
export const attentionBackwardKVKernel = cached(attentionBackwardKVKernelGen);
