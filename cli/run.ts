// The one entry of every command: parse the flags (--help prints the help, exit 0; a bad flag
// prints one line naming it, exit 2), run the command's body with the adapter named when the
// device starts, release the device (queue drained, then destroyed, which Deno needs to exit
// cleanly after GPU work), and end with the body's exit code. An error is a user-facing message,
// no stack trace (set CD_DEBUG=1 to see it), exit 1. Nothing runs when the file is imported:
// each command exports its spec and body, which tests run in their process (runInProcess).

import type { z } from "zod";
import { announceAdapter, releaseDevice } from "../engine/device.ts";
import { FlagError, type FlagsOptions, HelpRequested, parseCommandLine } from "./args.ts";

export interface CommandSpec<S extends z.ZodObject> extends FlagsOptions {
  /** The command's flags (cli/args.ts: keys in kebab-case, validated by the schema). */
  flags: S;
}

/** The body gets the validated flags and the keys the command line set; it returns the exit
 * code (nothing: 0), e.g. 1 after reporting pairs that failed while the rest were written. */
export type CommandBody<S extends z.ZodObject> = (
  flags: z.output<S> & { _?: string[] },
  given: ReadonlySet<string>,
) => Promise<number | void>;

/** Run the command whose module is `meta` (its import.meta) when that module is the program. */
export function runCommand<S extends z.ZodObject>(
  meta: ImportMeta,
  spec: CommandSpec<S>,
  body: CommandBody<S>,
): void {
  if (!meta.main) return;
  let parsed;
  try {
    parsed = parseCommandLine(Deno.args, spec.flags, spec);
  } catch (e) {
    if (e instanceof HelpRequested) {
      console.log(e.help.trimEnd());
      Deno.exit(0);
    }
    if (e instanceof FlagError) {
      console.error(`error: ${e.message}\n(run with --help for usage)`);
      Deno.exit(2);
    }
    fail(e);
  }
  announceAdapter();
  body(parsed.flags, parsed.given).then(async (code) => {
    await releaseDevice(); // before exit 1 too: the device must not be dropped mid-queue
    if (code) Deno.exit(code);
  }).catch(fail);
}

function fail(e: unknown): never {
  if (Deno.env.get("CD_DEBUG")) console.error(e);
  else console.error(`error: ${e instanceof Error ? e.message : String(e)}`);
  Deno.exit(1);
}

/** A command's body on `argv` in this process, as the command line would run it but without the
 * exit or the device's release: the tests drive several commands through one device this way. */
export async function runInProcess<S extends z.ZodObject>(
  spec: CommandSpec<S>,
  body: CommandBody<S>,
  argv: readonly string[],
): Promise<number | void> {
  const { flags, given } = parseCommandLine(argv, spec.flags, spec);
  return await body(flags, given);
}
