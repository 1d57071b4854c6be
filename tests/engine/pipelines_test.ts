import assert from "node:assert/strict";
import { device, initDevice } from "../../engine/device.ts";
import { run } from "../../engine/launch.ts";
import { sync } from "../../engine/recorder.ts";
import { empty } from "../../engine/tensor.ts";
import { rw, workgroupBytes } from "../../kernels/common.ts";
import { matmulKernel, TILE_LARGE } from "../../kernels/matmul.ts";

await initDevice();

Deno.test("workgroupBytes sums var<workgroup> declarations: scalars, vectors, nested arrays", () => {
  assert.equal(
    workgroupBytes(`var<workgroup> a: array<f32, 10>;
var<workgroup> b: array<vec4<f32>, 3>;
var<workgroup> c: array<array<array<vec4<f32>, 32>, 16>, 2>;
var<workgroup> d: u32;
var<workgroup> e: array<vec3<f32>, 5>;
var<storage, read_write> notShared: array<f32>;`),
    48 + 48 + 16384 + 16 + 80,
  );
  assert.equal(workgroupBytes("fn main() {}"), 0);
});

Deno.test("a kernel past the adapter's workgroup memory is refused with its name, not launched", async () => {
  const limit = device().limits.maxComputeWorkgroupStorageSize;
  const n = limit / 16 + 1;
  const out = empty([256]);
  assert.throws(
    () =>
      run(
        {
          name: "too_much_shared",
          workgroups: [1, 1, 1],
          bindings: [rw("o")],
          code: `@group(0) @binding(0) var<storage, read_write> o: array<f32>;
var<workgroup> S: array<vec4<f32>, ${n}>;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) { S[lid] = vec4<f32>(1.0); o[lid] = S[lid].x; }`,
        },
        [],
        [out],
      ),
    new RegExp(`too_much_shared declares ${n * 16} bytes .* allows ${limit}`),
  );
  await sync();
  out.dispose();
});

Deno.test("the matmul kernel's largest tile fits the adapter's workgroup memory", () => {
  const spec = { m: 4096, n: 4096, k: 4096, transA: false, transB: false, batch: [] };
  const bytes = workgroupBytes(matmulKernel({ ...spec, tile: TILE_LARGE }).code);
  assert.ok(bytes > 0 && bytes <= device().limits.maxComputeWorkgroupStorageSize, `${bytes}`);
});
