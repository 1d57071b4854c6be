// GPU errors reach the caller with what caused them: a read whose copy failed validation throws
// the GPU's error (it returned zeros before), and running out of memory says what this process
// held and what to change.

import assert from "node:assert/strict";
import { device, gpuErrorMessage, initDevice } from "../../engine/device.ts";
import { pool } from "../../engine/pool.ts";
import { Storage, Tensor, tensor } from "../../engine/tensor.ts";

await initDevice();

Deno.test("a read whose copy the GPU refused throws its error instead of returning zeros; the next read works", async () => {
  // A buffer of its own (not the pool's, which must not get a destroyed one back).
  const buf = device().createBuffer({
    size: 12,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    label: "doomed",
  });
  device().queue.writeBuffer(buf, 0, new Float32Array([1, 2, 3]));
  const t = new Tensor([3], "f32", new Storage(buf, 0, 12, false));
  buf.destroy();
  await assert.rejects(t.read(), /GPU error: .*'doomed'.*destroyed/);
  const u = tensor([4, 5]);
  assert.deepEqual(Array.from(await u.read()), [4, 5]);
  u.dispose();
});

Deno.test("out of memory names what this process's pool held and what to change; other errors pass as they are", () => {
  const oom = gpuErrorMessage("not enough memory left", "the pool held 70.00 GB");
  assert.match(oom, /^GPU out of memory: not enough memory left \(the pool held 70\.00 GB\)/);
  assert.match(oom, /smaller batch or image size, or run fewer processes on this GPU/);
  assert.equal(gpuErrorMessage("Buffer is invalid", "x"), "GPU error: Buffer is invalid");
  // The pool registers its report when it loads; the figures are its own.
  assert.ok(pool.heldBytes >= pool.liveBytes);
});
