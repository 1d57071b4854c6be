// Tensor cores from WGSL: a probe of wgpu's experimental cooperative-matrix extension
// (`wgpu-cooperative-matrix`, VK_KHR_cooperative_matrix underneath) on the GPU machine:
//   1. which adapter features exist and whether a device with the extension can be made;
//   2. which fragment types compile (16×16 f16 with f32 or f16 accumulators, 8×8 f32 / f16);
//   3. which of coopLoad / coopLoadT reads a row-major array (the layout is checked against a
//      CPU product, not assumed);
//   4. a tiled GEMM, f32 in global memory, f16 in the workgroup tiles, f32 accumulators, checked
//      against float64 on sampled entries and timed at large sizes.
// Standalone on purpose (no engine imports): it answers whether a kernel family is worth
// building before the engine learns about it. `deno run -A bench/gpu_coop_probe.ts`.
//
// Answer on Deno 2.9.6 (H100, session 14, bench/results/tensor_cores_h100_s14.md): no. The adapter
// does not list the feature and requestDevice refuses it ("experimental features are not
// enabled"): Deno builds its wgpu device with ExperimentalFeatures::disabled() and offers no way to
// change that, so step 1 stops the probe. Rerun it after a Deno upgrade; a tensor-core matmul for
// this engine (kernels/matmul_coop.ts, f16 operands, f32 sums, the matmul kernel's full spec) and
// the --precision plumbing are in git history at commit 5cfb4a1, never run on a GPU.

const FEATURE = "wgpu-cooperative-matrix";

const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
if (!adapter) throw new Error("no adapter");
console.log("adapter:", adapter.info.description || adapter.info.vendor);
console.log("adapter features:", [...adapter.features].sort().join(", "));

async function makeDevice(): Promise<GPUDevice> {
  const base = (["shader-f16", "timestamp-query"] as GPUFeatureName[]).filter((f) =>
    adapter!.features.has(f)
  );
  for (const extra of [[FEATURE, "subgroups"], [FEATURE]]) {
    try {
      const d = await adapter!.requestDevice({
        requiredFeatures: [...base, ...extra] as GPUFeatureName[],
        requiredLimits: {
          maxStorageBufferBindingSize: adapter!.limits.maxStorageBufferBindingSize,
          maxBufferSize: adapter!.limits.maxBufferSize,
          maxComputeWorkgroupStorageSize: adapter!.limits.maxComputeWorkgroupStorageSize,
          maxComputeInvocationsPerWorkgroup: adapter!.limits.maxComputeInvocationsPerWorkgroup,
        },
      });
      console.log("device features:", [...d.features].sort().join(", "));
      return d;
    } catch (e) {
      console.log(`requestDevice with ${extra.join("+")} failed: ${(e as Error).message}`);
    }
  }
  throw new Error(`no device with ${FEATURE}`);
}
const device = await makeDevice();
device.addEventListener("uncapturederror", (e) => {
  console.log("uncaptured:", (e as GPUUncapturedErrorEvent).error.message);
});

async function compile(label: string, code: string): Promise<GPUComputePipeline | null> {
  device.pushErrorScope("validation");
  device.pushErrorScope("internal");
  const module = device.createShaderModule({ code, label });
  const info = await module.getCompilationInfo();
  const msgs = info.messages.filter((m) => m.type === "error").map((m) => m.message);
  let pipe: GPUComputePipeline | null = null;
  try {
    pipe = device.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint: "main" },
    });
  } catch (e) {
    msgs.push((e as Error).message);
  }
  const internal = await device.popErrorScope();
  const validation = await device.popErrorScope();
  if (internal) msgs.push("internal: " + internal.message);
  if (validation) msgs.push("validation: " + validation.message);
  if (msgs.length) {
    console.log(`  ${label}: REJECTED ${msgs.join(" | ").slice(0, 600)}`);
    return null;
  }
  console.log(`  ${label}: ok`);
  return pipe;
}

function buffer(
  data: Float32Array<ArrayBuffer> | Uint16Array<ArrayBuffer> | number,
  usage = 0,
): GPUBuffer {
  const size = typeof data === "number" ? data : data.byteLength;
  const b = device.createBuffer({
    size: Math.max(16, Math.ceil(size / 16) * 16),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST | usage,
  });
  if (typeof data !== "number") device.queue.writeBuffer(b, 0, data);
  return b;
}

async function read(b: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
  const r = device.createBuffer({
    size: bytes,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(b, 0, r, 0, bytes);
  device.queue.submit([enc.finish()]);
  await r.mapAsync(GPUMapMode.READ);
  const out = r.getMappedRange().slice(0);
  r.unmap();
  r.destroy();
  return out;
}

function dispatch(pipe: GPUComputePipeline, buffers: GPUBuffer[], x: number, y = 1, reps = 1) {
  const bind = device.createBindGroup({
    layout: pipe.getBindGroupLayout(0),
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipe);
  pass.setBindGroup(0, bind);
  for (let i = 0; i < reps; i++) pass.dispatchWorkgroups(x, y);
  pass.end();
  device.queue.submit([enc.finish()]);
}

// f16 bits of a float (round to nearest even), and back: the CPU side of the layout check.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function toHalf(v: number): number {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = ((x >>> 23) & 0xff) - 127 + 15;
  let mant = x & 0x7fffff;
  if (exp <= 0) return sign; // the probe's values are never that small
  if (exp >= 31) return sign | 0x7c00;
  const round = mant & 0x1fff;
  mant >>>= 13;
  let h = sign | (exp << 10) | mant;
  if (round > 0x1000 || (round === 0x1000 && (mant & 1))) h++;
  return h;
}
function fromHalf(h: number): number {
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  const s = h & 0x8000 ? -1 : 1;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

// ---- 2. which fragment types compile
console.log("\n== fragment types");
const kinds: [string, string, string][] = [
  ["16x16 f16 -> f32", "coop_mat16x16<f16, A>", "coop_mat16x16<f32, C>"],
  ["16x16 f16 -> f16", "coop_mat16x16<f16, A>", "coop_mat16x16<f16, C>"],
  ["8x8 f32 -> f32", "coop_mat8x8<f32, A>", "coop_mat8x8<f32, C>"],
  ["8x8 f16 -> f32", "coop_mat8x8<f16, A>", "coop_mat8x8<f32, C>"],
  ["8x8 f16 -> f16", "coop_mat8x8<f16, A>", "coop_mat8x8<f16, C>"],
];
const compiles: Record<string, boolean> = {};
for (const [label, a, c] of kinds) {
  const ab = a.includes("<f16") ? "f16" : "f32";
  const cs = c.includes("<f16") ? "f16" : "f32";
  const n = a.startsWith("coop_mat16x16") ? 16 : 8;
  const bt = a.replace(", A>", ", B>");
  const code = `enable f16;\nenable wgpu_cooperative_matrix;
@group(0) @binding(0) var<storage, read> x: array<${ab}>;
@group(0) @binding(1) var<storage, read_write> y: array<${cs}>;
@compute @workgroup_size(32)
fn main() {
  let a = coopLoad<${a}>(&x[0], ${n}u);
  let b = coopLoad<${bt}>(&x[0], ${n}u);
  var c = ${c}();
  c = coopMultiplyAdd(a, b, c);
  coopStore(c, &y[0], ${n}u);
}`;
  compiles[label] = (await compile(label, code)) !== null;
}

// ---- 3. layout: which load/store reads a row-major 16×16 array
console.log("\n== layout (16x16 f16 -> f32)");
let rowLoad = "";
let rowStore = "";
if (compiles["16x16 f16 -> f32"]) {
  const N = 16;
  const A = new Float32Array(N * N).map((_, i) => ((i * 7) % 13) / 8 - 0.75);
  const B = new Float32Array(N * N).map((_, i) => ((i * 5) % 11) / 8 - 0.5);
  const halfA = Uint16Array.from(A, toHalf);
  const halfB = Uint16Array.from(B, toHalf);
  const Ah = Array.from(halfA, fromHalf);
  const Bh = Array.from(halfB, fromHalf);
  const at = (m: number[], r: number, c: number, t: boolean) => t ? m[c * N + r] : m[r * N + c];
  // Row-major reading of a product op(A)·op(B), optionally stored transposed.
  const reference = (ta: boolean, tb: boolean, tc: boolean) => {
    const out = new Float64Array(N * N);
    for (let i = 0; i < N; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < N; k++) s += at(Ah, i, k, ta) * at(Bh, k, j, tb);
        out[tc ? j * N + i : i * N + j] = s;
      }
    }
    return out;
  };
  const bufA = buffer(halfA);
  const bufB = buffer(halfB);
  const bufC = buffer(N * N * 4);
  for (const la of ["coopLoad", "coopLoadT"]) {
    for (const lb of ["coopLoad", "coopLoadT"]) {
      for (const st of ["coopStore", "coopStoreT"]) {
        const code = `enable f16;\nenable wgpu_cooperative_matrix;
@group(0) @binding(0) var<storage, read> xa: array<f16>;
@group(0) @binding(1) var<storage, read> xb: array<f16>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(32)
fn main() {
  let a = ${la}<coop_mat16x16<f16, A>>(&xa[0], 16u);
  let b = ${lb}<coop_mat16x16<f16, B>>(&xb[0], 16u);
  let c = coopMultiplyAdd(a, b, coop_mat16x16<f32, C>());
  ${st}(c, &y[0], 16u);
}`;
        const label = `${la}(A) ${lb}(B) ${st}(C)`;
        const pipe = await compile(label, code);
        if (!pipe) continue;
        dispatch(pipe, [bufA, bufB, bufC], 1);
        const got = new Float32Array(await read(bufC, N * N * 4));
        const matches: string[] = [];
        for (const ta of [false, true]) {
          for (const tb of [false, true]) {
            for (const tc of [false, true]) {
              const ref = reference(ta, tb, tc);
              let err = 0;
              for (let i = 0; i < N * N; i++) err = Math.max(err, Math.abs(ref[i] - got[i]));
              if (err < 1e-3) {
                matches.push(`${ta ? "Aᵀ" : "A"}·${tb ? "Bᵀ" : "B"}${tc ? " stored ᵀ" : ""}`);
              }
            }
          }
        }
        console.log(`    -> ${matches.join(", ") || "no match"}`);
        if (matches.includes("A·B")) {
          rowLoad = la;
          rowStore = st;
          if (la !== lb) console.log("    (A and B loads differ for row-major)");
        }
      }
    }
  }
  console.log(`row-major load: ${rowLoad || "?"}, row-major store: ${rowStore || "?"}`);
}

// ---- 4. tiled GEMM: C[M,N] = A[M,K]·B[K,N], all row-major f32 in global memory
interface Gemm {
  bm: number;
  bn: number;
  bk: number;
  wm: number;
  wn: number;
}
function gemmWgsl(g: Gemm, load: string, store: string): string {
  const nt = g.wm * g.wn * 32;
  const tm = g.bm / g.wm;
  const tn = g.bn / g.wn;
  const fm = tm / 16;
  const fn = tn / 16;
  const la = g.bk + 8; // row pitch of the A tile (halves), padded against bank conflicts
  const lb = g.bn + 8;
  const aVec = (g.bm * g.bk) / 4 / nt; // vec4 loads per thread per slab
  const bVec = (g.bk * g.bn) / 4 / nt;
  const L: string[] = [];
  L.push("enable f16;", "enable wgpu_cooperative_matrix;");
  L.push("struct P { m: u32, n: u32, k: u32, pad: u32 };");
  L.push("@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;");
  L.push("@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;");
  L.push("@group(0) @binding(2) var<storage, read_write> c: array<f32>;");
  L.push("@group(0) @binding(3) var<storage, read> p: P;");
  L.push(`var<workgroup> sa: array<f16, ${g.bm * la}>;`);
  L.push(`var<workgroup> sb: array<f16, ${g.bk * lb}>;`);
  L.push(`@compute @workgroup_size(${nt})`);
  L.push(
    "fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {",
  );
  L.push(`  let m0 = wid.y * ${g.bm}u; let n0 = wid.x * ${g.bn}u;`);
  L.push(`  let sg = tid / 32u; let wy = sg / ${g.wn}u; let wx = sg % ${g.wn}u;`);
  L.push("  let kq = p.k / 4u; let nq = p.n / 4u;");
  for (let i = 0; i < fm; i++) {
    for (let j = 0; j < fn; j++) L.push(`  var c${i}_${j} = coop_mat16x16<f32, C>();`);
  }
  const aIdx = (t: number, kb: string) => {
    const e = `(tid + ${t * nt}u)`;
    return `(m0 + ${e} / ${g.bk / 4}u) * kq + ${kb} + ${e} % ${g.bk / 4}u`;
  };
  const bIdx = (t: number, kb: string) => {
    const e = `(tid + ${t * nt}u)`;
    return `(${kb} + ${e} / ${g.bn / 4}u) * nq + n0 / 4u + ${e} % ${g.bn / 4}u`;
  };
  for (let t = 0; t < aVec; t++) L.push(`  var ra${t} = a[${aIdx(t, "0u")}];`);
  for (let t = 0; t < bVec; t++) L.push(`  var rb${t} = b[${bIdx(t, "0u")}];`);
  L.push(`  let nkt = p.k / ${g.bk}u;`);
  L.push("  for (var kt = 0u; kt < nkt; kt = kt + 1u) {");
  for (let t = 0; t < aVec; t++) {
    const e = `(tid + ${t * nt}u)`;
    L.push(
      `    { let d = (${e} / ${g.bk / 4}u) * ${la}u + (${e} % ${g.bk / 4}u) * 4u; ` +
        `let v = vec4<f16>(ra${t}); sa[d] = v.x; sa[d + 1u] = v.y; sa[d + 2u] = v.z; sa[d + 3u] = v.w; }`,
    );
  }
  for (let t = 0; t < bVec; t++) {
    const e = `(tid + ${t * nt}u)`;
    L.push(
      `    { let d = (${e} / ${g.bn / 4}u) * ${lb}u + (${e} % ${g.bn / 4}u) * 4u; ` +
        `let v = vec4<f16>(rb${t}); sb[d] = v.x; sb[d + 1u] = v.y; sb[d + 2u] = v.z; sb[d + 3u] = v.w; }`,
    );
  }
  L.push("    workgroupBarrier();");
  L.push("    if (kt + 1u < nkt) {");
  L.push(`      let ka = (kt + 1u) * ${g.bk / 4}u; let kb = (kt + 1u) * ${g.bk}u;`);
  for (let t = 0; t < aVec; t++) L.push(`      ra${t} = a[${aIdx(t, "ka")}];`);
  for (let t = 0; t < bVec; t++) L.push(`      rb${t} = b[${bIdx(t, "kb")}];`);
  L.push("    }");
  for (let kk = 0; kk < g.bk / 16; kk++) {
    L.push("    {");
    for (let j = 0; j < fn; j++) {
      L.push(
        `      let b${j} = ${load}<coop_mat16x16<f16, B>>(&sb[${kk * 16 * lb}u + wx * ${tn}u + ${
          j * 16
        }u], ${lb}u);`,
      );
    }
    for (let i = 0; i < fm; i++) {
      L.push(
        `      let a${i} = ${load}<coop_mat16x16<f16, A>>(&sa[(wy * ${tm}u + ${
          i * 16
        }u) * ${la}u + ${kk * 16}u], ${la}u);`,
      );
      for (let j = 0; j < fn; j++) {
        L.push(`      c${i}_${j} = coopMultiplyAdd(a${i}, b${j}, c${i}_${j});`);
      }
    }
    L.push("    }");
  }
  L.push("    workgroupBarrier();");
  L.push("  }");
  L.push("  let ldc = p.n;");
  for (let i = 0; i < fm; i++) {
    for (let j = 0; j < fn; j++) {
      L.push(
        `  { let o = (m0 + wy * ${tm}u + ${i * 16}u) * ldc + n0 + wx * ${tn}u + ${j * 16}u; ` +
          `${store}(c${i}_${j}, &c[o], ldc); }`,
      );
    }
  }
  L.push("}");
  return L.join("\n");
}

function randomMatrix(n: number, seed: number): Float32Array<ArrayBuffer> {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

async function gemmCase(g: Gemm, m: number, n: number, k: number, reps: number) {
  const label = `gemm ${g.bm}x${g.bn}x${g.bk} warps ${g.wm}x${g.wn} @ ${m}x${n}x${k}`;
  const pipe = await compile(label, gemmWgsl(g, rowLoad, rowStore));
  if (!pipe) return;
  const A = randomMatrix(m * k, 7);
  const B = randomMatrix(k * n, 11);
  const bufA = buffer(A);
  const bufB = buffer(B);
  const bufC = buffer(m * n * 4);
  const bufP = buffer(new Float32Array(new Uint32Array([m, n, k, 0]).buffer));
  const bufs = [bufA, bufB, bufC, bufP];
  dispatch(pipe, bufs, n / g.bn, m / g.bm);
  const got = new Float32Array(await read(bufC, m * n * 4));
  // Sampled entries against float64 of the f16-rounded inputs and of the exact inputs.
  let errHalf = 0;
  let errExact = 0;
  let scale = 0;
  for (let s = 0; s < 256; s++) {
    const i = (s * 7919) % m;
    const j = (s * 104729) % n;
    let ref = 0;
    let refH = 0;
    for (let q = 0; q < k; q++) {
      ref += A[i * k + q] * B[q * n + j];
      refH += fromHalf(toHalf(A[i * k + q])) * fromHalf(toHalf(B[q * n + j]));
    }
    errHalf = Math.max(errHalf, Math.abs(got[i * n + j] - refH));
    errExact = Math.max(errExact, Math.abs(got[i * n + j] - ref));
    scale = Math.max(scale, Math.abs(ref));
  }
  await device.queue.onSubmittedWorkDone();
  let best = Infinity;
  for (let sample = 0; sample < 3; sample++) {
    const t0 = performance.now();
    dispatch(pipe, bufs, n / g.bn, m / g.bm, reps);
    await device.queue.onSubmittedWorkDone();
    best = Math.min(best, (performance.now() - t0) / reps);
  }
  const tflops = (2 * m * n * k) / (best * 1e-3) / 1e12;
  console.log(
    `    ${best.toFixed(3)} ms, ${tflops.toFixed(1)} TFLOP/s; max err vs f16-rounded inputs ` +
      `${errHalf.toExponential(2)}, vs exact ${errExact.toExponential(2)} (max |C| ${
        scale.toFixed(2)
      })`,
  );
  for (const b of bufs) b.destroy();
}

if (rowLoad && rowStore) {
  console.log("\n== tiled GEMM, f32 global, f16 tiles, f32 accumulate");
  const configs: Gemm[] = [
    { bm: 64, bn: 64, bk: 32, wm: 2, wn: 2 },
    { bm: 128, bn: 128, bk: 32, wm: 2, wn: 2 },
    { bm: 128, bn: 128, bk: 32, wm: 4, wn: 2 },
    { bm: 128, bn: 64, bk: 32, wm: 2, wn: 2 },
    { bm: 128, bn: 256, bk: 32, wm: 2, wn: 4 },
    { bm: 128, bn: 128, bk: 16, wm: 2, wn: 2 },
  ];
  await gemmCase(configs[0], 256, 384, 512, 1);
  for (const g of configs) await gemmCase(g, 4096, 4096, 4096, 20);
  for (const g of configs.slice(1, 3)) await gemmCase(g, 8192, 8192, 8192, 5);
}
device.destroy();
