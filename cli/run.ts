// Top-level error handling of every command: a user-facing message, no stack trace, exit 1
// (set CD_DEBUG=1 to see the stack).

export function runCommand(main: () => Promise<void>): void {
  main().catch((e) => {
    if (Deno.env.get("CD_DEBUG")) console.error(e);
    else console.error(`error: ${e instanceof Error ? e.message : String(e)}`);
    Deno.exit(1);
  });
}
