// Issue 18 item 6, in child processes: without a Vulkan driver a command fails at once with the
// install hint (instead of falling back to OpenGL and running for minutes), the adapter is named
// at start-up, OpenGL asked for by the user is refused, and a process that ends with GPU work
// still queued exits cleanly once it calls releaseDevice() (Deno panicked there, exit 139).

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { tempDir } from "../temp.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

async function run(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { XDG_RUNTIME_DIR: "/tmp", ...env },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  });
  const r = await cmd.output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

Deno.test("device: no Vulkan driver → exit 1 at once with the install hint, no OpenGL fallback", async () => {
  const r = await run(["run", "-A", "cli/models.ts"], {
    VK_ICD_FILENAMES: "/nonexistent/icd.json",
    VK_DRIVER_FILES: "/nonexistent/icd.json",
  });
  assert.equal(r.code, 1, r.out + r.err);
  assert.match(r.err, /No WebGPU adapter with compute found/);
  assert.match(r.err, /mesa-vulkan-drivers/);
  assert.equal(r.out, "", "no table from an OpenGL adapter");
});

Deno.test("device: DENO_WEBGPU_BACKEND=gl is refused naming the fix", async () => {
  const r = await run(["run", "-A", "cli/models.ts"], { DENO_WEBGPU_BACKEND: "gl" });
  assert.equal(r.code, 1, r.out + r.err);
  assert.match(r.err, /DENO_WEBGPU_BACKEND=gl asks for OpenGL; unset it/);
});

Deno.test("device: deno task models on a cold shader cache names the adapter first and exits 0", async () => {
  const cache = await tempDir({ prefix: "cd_mesa_cache_" });
  try {
    const r = await run(["run", "-A", "cli/models.ts"], { MESA_SHADER_CACHE_DIR: cache });
    assert.equal(r.code, 0, r.err);
    assert.match(r.err.split("\n")[0], /^adapter: .+\((Vulkan|Metal|DX12)/);
    assert.match(r.out, /^fc_ef +1\.351/m);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("device: a test file that ends with GPU work queued exits 0 (Deno panicked)", async () => {
  // About 6 s of matmuls on the software adapter, submitted and never read, and no
  // releaseDevice() call: Deno's exit used to wait 5 s for the queue, then panic ("timed out
  // while waiting on the last successful submission", exit 1). The device's beforeunload hook
  // now drains the queue and destroys the device first, for tests and scripts alike.
  const dir = await tempDir({ prefix: "cd_exit_" });
  const file = `${dir}/exit_test.ts`;
  const url = (p: string) => new URL(`../../${p}`, import.meta.url).href;
  await Deno.writeTextFile(
    file,
    `import { initDevice } from "${url("engine/device.ts")}";
import { matmul } from "${url("engine/ops/matmul.ts")}";
import { flush } from "${url("engine/recorder.ts")}";
import { tensor } from "${url("engine/tensor.ts")}";
Deno.test("leaves work queued", async () => {
  await initDevice();
  const a = tensor(new Float32Array(2048 * 2048).fill(1 / 2048), [2048, 2048]);
  let c = a;
  for (let i = 0; i < 3; i++) c = matmul(c, a);
  flush();
});
`,
  );
  try {
    const r = await run(["test", "-A", "--no-check", file]);
    assert.doesNotMatch(r.err + r.out, /panicked/);
    assert.equal(r.code, 0, r.err + r.out);
    assert.match(r.out, /1 passed/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
