// Top-level error handling of every command: a user-facing message, no stack trace, exit 1
// (set CD_DEBUG=1 to see the stack). The adapter is named when the device starts, and the device
// is released (queue drained, then destroyed) before the process ends, which Deno needs to exit
// cleanly after GPU work.

import { announceAdapter, releaseDevice } from "../engine/device.ts";

export function runCommand(main: () => Promise<void>): void {
  announceAdapter();
  main().then(releaseDevice).catch((e) => {
    if (Deno.env.get("CD_DEBUG")) console.error(e);
    else console.error(`error: ${e instanceof Error ? e.message : String(e)}`);
    Deno.exit(1);
  });
}
