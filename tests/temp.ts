// Temporary folders for tests, removed when the test module ends (its "unload" event), pass or
// fail. Training tests write checkpoints of tens of MB each; left behind, a suite run leaves
// gigabytes in /tmp, and on a machine whose disk is near full the next run's checkpoint writes
// fail (CI, session 15). Set KEEP_TEST_DIRS=1 to keep them for a look after a failure.

const made: string[] = [];
let listening = false;

function forget(): void {
  if (Deno.env.get("KEEP_TEST_DIRS")) {
    for (const d of made) console.error(`kept ${d}`);
    return;
  }
  for (const d of made.splice(0)) {
    try {
      Deno.removeSync(d, { recursive: true });
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
}

/** A new empty folder under the system's temp folder, removed when this test module ends. */
export async function tempDir(options?: Deno.MakeTempOptions): Promise<string> {
  const dir = await Deno.makeTempDir(options);
  made.push(dir);
  if (!listening) {
    globalThis.addEventListener("unload", forget);
    listening = true;
  }
  return dir;
}

/** tempDir, synchronously. */
export function tempDirSync(options?: Deno.MakeTempOptions): string {
  const dir = Deno.makeTempDirSync(options);
  made.push(dir);
  if (!listening) {
    globalThis.addEventListener("unload", forget);
    listening = true;
  }
  return dir;
}
