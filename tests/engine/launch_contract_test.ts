// The kernel contract: a kernel's declared bindings generate its WGSL header, and run() refuses a
// launch whose tensors do not match them (count, dtype, access, minimum size), naming the kernel
// and the binding, before anything reaches WebGPU. A matching launch runs and computes. Raw buffer
// ranges (seeds, hyper-parameter slots) bind beside tensors and are checked too.

import { ok as assert } from "node:assert/strict";
import { device } from "../../engine/device.ts";
import { run } from "../../engine/launch.ts";
import { seedBinding } from "../../engine/ops/dropout.ts";
import { sync } from "../../engine/recorder.ts";
import { empty, tensor } from "../../engine/tensor.ts";
import { header, kernel1d, ro, rw } from "../../kernels/common.ts";
import { dropoutKernel } from "../../kernels/dropout.ts";
import { matmulKernel, TILE_LARGE } from "../../kernels/matmul.ts";
import { assertClose, initDevice } from "../util.ts";

await initDevice();

/** out[i] = x[i] + f32(idx[i]) over n elements; idx must hold n values. */
function addIndex(n: number) {
  return kernel1d(
    "contract_add_index",
    [ro("x"), ro("idx", "u32", { count: n }), rw("out")],
    n,
    "out[i] = x[i] + f32(idx[i]);",
  );
}

function throwsNaming(fn: () => void, ...parts: string[]): void {
  let message = "";
  try {
    fn();
  } catch (e) {
    message = (e as Error).message;
  }
  assert(message !== "", "expected the launch to be refused");
  for (const p of parts) assert(message.includes(p), `'${message}' should name ${p}`);
}

Deno.test("header numbers the declared bindings in order", () => {
  assert(
    header([ro("x"), rw("y", "vec4<f32>")]) ===
      "@group(0) @binding(0) var<storage, read> x: array<f32>;\n" +
        "@group(0) @binding(1) var<storage, read_write> y: array<vec4<f32>>;",
  );
});

Deno.test("a matching launch runs", async () => {
  const n = 37;
  const x = tensor(Array.from({ length: n }, (_, i) => i * 0.5));
  const idx = tensor(Array.from({ length: n }, (_, i) => 3 * i), [n], "u32");
  const out = empty([n]);
  run(addIndex(n), [x, idx], [out]);
  await sync();
  assertClose(await out.read(), Array.from({ length: n }, (_, i) => i * 0.5 + 3 * i));
  for (const t of [x, idx, out]) t.dispose();
});

Deno.test("a mismatched launch throws naming the kernel and the binding", () => {
  const n = 8;
  const k = addIndex(n);
  const x = tensor(new Float32Array(n));
  const idx = tensor(new Array(n).fill(1), [n], "u32");
  const out = empty([n]);
  // Dtype: an f32 tensor where idx expects u32.
  throwsNaming(
    () => run(k, [x, x], [out]),
    "kernel contract_add_index",
    "binding 1 'idx'",
    "expects u32 [read]",
    "got f32 tensor",
  );
  // Count: a missing output.
  throwsNaming(() => run(k, [x, idx], []), "kernel contract_add_index", "expects 3 bindings");
  // Access: an output bound where the kernel only reads (inputs and outputs swapped round).
  throwsNaming(() => run(k, [x], [idx, out]), "binding 1 'idx'", "read_write");
  // Size: idx shorter than the n elements the kernel declares it reads.
  const short = tensor([1, 2, 3], [3], "u32");
  throwsNaming(() => run(k, [x, short], [out]), "binding 1 'idx'", "of at least 8", "12 bytes");
  // A shipped kernel: matmul's a_in (vec4<f32>) given u32 data.
  const mm = matmulKernel({
    m: 4,
    n: 4,
    k: 4,
    transA: false,
    transB: false,
    batch: [],
    tile: { ...TILE_LARGE, bm: 16, bn: 16, tm: 4, tn: 4 },
  });
  const a = tensor(new Array(16).fill(0), [4, 4], "u32");
  const b = tensor(new Float32Array(16), [4, 4]);
  const c = empty([4, 4]);
  throwsNaming(() => run(mm, [a, b], [c]), "kernel matmul", "binding 0 'a_in'", "vec4<f32>");
  for (const t of [x, idx, out, short, a, b, c]) t.dispose();
});

Deno.test("a launch binding a raw buffer range is checked for its tensors and the range", async () => {
  const n = 12;
  // out[i] = x[i] · scale[0], the scale in a raw 16-byte slot of a buffer that is no tensor, as
  // AdamW's hyper-parameters and dropout's seeds are bound.
  const k = kernel1d(
    "contract_raw_scale",
    [ro("scale", "f32", { count: 4 }), ro("x"), rw("out")],
    n,
    "out[i] = x[i] * scale[0];",
  );
  const buf = device().createBuffer({
    size: 512,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    label: "contract_slots",
  });
  device().queue.writeBuffer(buf, 256, new Float32Array([2.5, 0, 0, 0]));
  const slot = { buffer: buf, offset: 256, size: 16 };
  const x = tensor(Array.from({ length: n }, (_, i) => i - 4));
  const xu = tensor(new Array(n).fill(1), [n], "u32");
  const out = empty([n]);
  run(k, [slot, x], [out]);
  await sync();
  assertClose(await out.read(), Array.from({ length: n }, (_, i) => (i - 4) * 2.5));
  // The tensors beside the range are checked as always: a u32 x is refused.
  throwsNaming(
    () => run(k, [slot, xu], [out]),
    "kernel contract_raw_scale",
    "binding 1 'x'",
    "u32",
  );
  // So are the count, the range's size and its access.
  throwsNaming(() => run(k, [slot], [out]), "expects 3 bindings");
  throwsNaming(
    () => run(k, [{ ...slot, size: 8 }, x], [out]),
    "binding 0 'scale'",
    "8 bytes",
    "contract_slots",
  );
  throwsNaming(() => run(k, [x], [slot, out]), "binding 1 'x'", "contract_slots", "read_write");
  // A shipped kernel: dropout's x given u32 data next to its seed slot.
  const d = dropoutKernel({ n, p: 0.5, unit: 1, relu: false });
  run(d, [x, seedBinding(7)], [out]);
  throwsNaming(() => run(d, [xu, seedBinding(7)], [out]), "kernel dropout", "binding 0 'x'");
  await sync();
  for (const t of [x, xu, out]) t.dispose();
  buf.destroy();
});
