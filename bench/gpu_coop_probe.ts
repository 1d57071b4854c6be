// Tensor cores from WGSL: a probe of wgpu's experimental cooperative-matrix extension
// (`wgpu-cooperative-matrix`, VK_KHR_cooperative_matrix underneath) on the GPU machine:
//   1. which adapter features exist and whether a device with the extension can be made;
//   2. which fragment types compile (16×16 f16 with f32 or f16 accumulators, 8×8 f32 / f16).
// Once both say yes, the layout check (which of coopLoad / coopLoadT reads a row-major array)
// and the tiled-GEMM timing of commit 5cfb4a1's version of this file come next.
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

device.destroy();
