// Command-line flags for every command: node:util parseArgs reads them, a zod object schema says
// which exist and validates them. Flags are the schema's keys in kebab-case (valCount → --val-count).
// Numbers are coerced, arrays accept repeats and commas (--thresholds 0.05,0.2), booleans accept
// --flag and --no-flag. Errors are thrown; cli/run.ts prints them (one line naming the flag, exit 2).

import { parseArgs } from "node:util";
import { z } from "zod";

export interface FlagsOptions {
  /** The whole --help text. */
  help: string;
  /** Short or alternative names: { o: "out" } makes -o mean --out. */
  aliases?: Record<string, string>;
  /** Accept positional arguments (returned under `_`); default false: they are errors. */
  positionals?: boolean;
}

/** A flag problem, meant for the user: `message` is complete and names the flag. */
export class FlagError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FlagError";
  }
}

/** Thrown by parseFlagsOrThrow when --help or -h is given. */
export class HelpRequested extends Error {
  constructor(readonly help: string) {
    super("help requested");
    this.name = "HelpRequested";
  }
}

type Kind = "boolean" | "number" | "string";
interface FlagSpec {
  key: string;
  flag: string;
  kind: Kind;
  multiple: boolean;
  choices?: string[];
}

/** Minimal view of zod 4's internal definition, enough to tell flag kinds apart. */
interface Def {
  type: string;
  innerType?: { _zod: { def: Def } };
  in?: { _zod: { def: Def } };
  element?: { _zod: { def: Def } };
  entries?: Record<string, string | number>;
  values?: unknown[];
}

function defOf(t: unknown): Def {
  return (t as { _zod: { def: Def } })._zod.def;
}

/** Strip optional/default/nullable/pipe wrappers down to the type the user writes. */
function core(def: Def): Def {
  for (;;) {
    if (def.innerType) def = def.innerType._zod.def;
    else if (def.type === "pipe" && def.in) def = def.in._zod.def;
    else return def;
  }
}

const kebab = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

function specOf(key: string, t: unknown): FlagSpec {
  let def = core(defOf(t));
  const multiple = def.type === "array";
  if (multiple && def.element) def = core(def.element._zod.def);
  const kind: Kind = def.type === "boolean"
    ? "boolean"
    : def.type === "number"
    ? "number"
    : "string";
  const choices = def.type === "enum" && def.entries
    ? Object.values(def.entries).map(String)
    : def.type === "literal" && def.values
    ? def.values.map(String)
    : undefined;
  return { key, flag: kebab(key), kind, multiple, choices };
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length];
}

function unknownFlagMessage(raw: string, specs: FlagSpec[]): string {
  const name = raw.replace(/^-+/, "").split("=")[0];
  const known = specs.map((s) => s.flag);
  const close = known.filter((k) => editDistance(k, name) <= Math.max(1, name.length / 4));
  const hint = close.length ? ` Did you mean ${close.map((k) => `--${k}`).join(" or ")}?` : "";
  return `unknown flag ${raw}.${hint} Known flags: ${
    [...known, "help"].map((k) => `--${k}`).join(", ")
  }`;
}

/** Rephrase node:util's parse errors in terms of our flags. */
function parseErrorMessage(e: Error & { code?: string }, specs: FlagSpec[]): string {
  const quoted = /'(?:-\w, )?(--?[\w-]+)/.exec(e.message)?.[1] ?? "";
  switch (e.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return unknownFlagMessage(quoted, specs);
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument ${/'([^']*)'/.exec(e.message)?.[1] ?? ""}: ` +
        `this command takes only --flags (values go after the flag: --out DIR)`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (/argument missing/.test(e.message)) return `${quoted} needs a value`;
      if (/does not take an argument/.test(e.message)) {
        return `${quoted} is a switch and takes no value (use ${quoted} or --no-${
          quoted.replace(/^--/, "")
        })`;
      }
      if (/ambiguous/.test(e.message)) {
        return `${quoted} is followed by something that looks like a flag; ` +
          `write ${quoted}=VALUE if the value starts with a dash`;
      }
      return e.message;
    default:
      return e.message;
  }
}

/** Plain decimal numbers only: Number() would also read "0x10" as 16, "0b1", "1_0" or " ". */
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

function coerce(spec: FlagSpec, raw: string): string | number {
  if (spec.kind !== "number") return raw;
  const v = DECIMAL.test(raw.trim()) ? Number(raw) : NaN;
  if (!Number.isFinite(v)) {
    throw new FlagError(`--${spec.flag}: expected a number, got "${raw}"`);
  }
  return v;
}

/** Zod's wording for the common numeric cases, said plainly. */
function plainMessage(issue: z.core.$ZodIssue): string {
  const i = issue as z.core.$ZodIssue & {
    expected?: string;
    origin?: string;
    minimum?: number | bigint;
    maximum?: number | bigint;
    inclusive?: boolean;
  };
  if (i.code === "invalid_type" && i.expected === "int") return "expected a whole number";
  if (i.code === "too_small" && i.origin === "number") {
    return `must be ${i.inclusive ? "≥" : ">"} ${i.minimum}`;
  }
  if (i.code === "too_big" && i.origin === "number") {
    return `must be ${i.inclusive ? "≤" : "<"} ${i.maximum}`;
  }
  return issue.message;
}

function issueMessage(
  issue: z.core.$ZodIssue,
  specs: Map<string, FlagSpec>,
  raw: Record<string, unknown>,
): string {
  const key = String(issue.path[0] ?? "");
  const spec = specs.get(key);
  const flag = spec ? `--${spec.flag}` : key || "flags";
  const got = raw[key];
  // A missing required flag: zod says invalid_type, or invalid_value for an enum.
  if (got === undefined && (issue.code === "invalid_type" || issue.code === "invalid_value")) {
    return `${flag} is required`;
  }
  const shown = Array.isArray(got) ? got.join(",") : String(got);
  if (spec?.choices) {
    return `${flag}: "${shown}" is not allowed; allowed values: ${spec.choices.join(", ")}`;
  }
  const gotText = typeof got === "string" ? JSON.stringify(got) : shown;
  return `${flag}: ${plainMessage(issue)} (got ${gotText})`;
}

/** Parse and validate; throws FlagError for bad input and HelpRequested for --help. */
export function parseFlagsOrThrow<S extends z.ZodObject>(
  argv: readonly string[],
  schema: S,
  opts: FlagsOptions,
): z.output<S> & { _?: string[] } {
  return parseCommandLine(argv, schema, opts).flags;
}

/** Flags as validated, and the keys the command line set (the schema fills in defaults for
 * the rest): a command that merges a config file lets only these override it. */
export interface ParsedFlags<S extends z.ZodObject> {
  flags: z.output<S> & { _?: string[] };
  given: ReadonlySet<string>;
}

/** parseFlagsOrThrow, also saying which keys were given. */
export function parseCommandLine<S extends z.ZodObject>(
  argv: readonly string[],
  schema: S,
  opts: FlagsOptions,
): ParsedFlags<S> {
  const specs = Object.entries(schema.shape).map(([k, t]) => specOf(k, t));
  const byKey = new Map(specs.map((s) => [s.key, s]));
  const options: Record<
    string,
    { type: "boolean" | "string"; multiple?: boolean; short?: string }
  > = {};
  for (const s of specs) {
    options[s.flag] = { type: s.kind === "boolean" ? "boolean" : "string", multiple: s.multiple };
  }
  options.help = { type: "boolean", short: "h" };
  for (const [alias, target] of Object.entries(opts.aliases ?? {})) {
    const flag = kebab(target);
    if (!options[flag]) throw new Error(`alias ${alias} points to unknown flag ${target}`);
    if (alias.length === 1) options[flag].short = alias;
  }
  // Long aliases are rewritten to their targets before parsing.
  const longAliases = Object.entries(opts.aliases ?? {}).filter(([a]) => a.length > 1);
  const args = argv.map((a) => {
    for (const [alias, target] of longAliases) {
      if (a === `--${alias}` || a.startsWith(`--${alias}=`)) {
        return `--${kebab(target)}${a.slice(alias.length + 2)}`;
      }
    }
    return a;
  });
  if (args.includes("--help") || args.includes("-h")) throw new HelpRequested(opts.help);
  let parsed;
  try {
    parsed = parseArgs(
      {
        args,
        options,
        strict: true,
        allowPositionals: opts.positionals ?? false,
        allowNegative: true,
      } as Parameters<typeof parseArgs>[0],
    );
  } catch (e) {
    throw new FlagError(parseErrorMessage(e as Error, specs));
  }
  const raw: Record<string, unknown> = {};
  for (const s of specs) {
    const v = (parsed.values as Record<string, unknown>)[s.flag];
    if (v === undefined) continue;
    if (s.multiple) {
      raw[s.key] = (v as string[]).flatMap((x) => x.split(",")).filter((x) => x !== "")
        .map((x) => coerce(s, x));
    } else raw[s.key] = typeof v === "string" ? coerce(s, v) : v;
  }
  const result = schema.safeParse(raw);
  if (!result.success) {
    throw new FlagError(result.error.issues.map((i) => issueMessage(i, byKey, raw)).join("\n"));
  }
  const out = result.data as z.output<S> & { _?: string[] };
  if (opts.positionals) out._ = parsed.positionals;
  return { flags: out, given: new Set(Object.keys(raw)) };
}
