import assert from "node:assert/strict";
import { z } from "zod";
import { FlagError, HelpRequested, parseFlagsOrThrow } from "../../cli/args.ts";

const Schema = z.object({
  out: z.string().min(1),
  pairs: z.number().int().min(1).default(10),
  lambda: z.number().positive().optional(),
  model: z.enum(["tinycd", "fc-siam-diff"]).default("tinycd"),
  verbose: z.boolean().default(false),
  thresholds: z.array(z.number()).optional(),
  valCount: z.number().int().min(0).default(100),
});
const opts = { help: "usage: test --out DIR", aliases: { o: "out", lr: "lambda" } };
const parse = (...argv: string[]) => parseFlagsOrThrow(argv, Schema, opts);

function flagError(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof FlagError, `expected a FlagError, got ${e}`);
    return e.message;
  }
  throw new Error("expected a FlagError");
}

Deno.test("args: --flag value, --flag=value, booleans, numbers, arrays, kebab-case, aliases", () => {
  assert.deepStrictEqual(parse("--out", "runs/a"), {
    out: "runs/a",
    pairs: 10,
    model: "tinycd",
    verbose: false,
    valCount: 100,
  });
  const all = parse(
    "--out=x",
    "--pairs",
    "3",
    "--lambda=1e-4",
    "--model",
    "fc-siam-diff",
    "--verbose",
    "--thresholds",
    "0.05,0.2",
    "--thresholds=0.5",
    "--val-count",
    "0",
  );
  assert.deepStrictEqual(all, {
    out: "x",
    pairs: 3,
    lambda: 1e-4,
    model: "fc-siam-diff",
    verbose: true,
    thresholds: [0.05, 0.2, 0.5],
    valCount: 0,
  });
  assert.equal(parse("-o", "y").out, "y");
  assert.equal(parse("--out", "y", "--lr", "0.5").lambda, 0.5);
  assert.equal(parse("--out", "y", "--verbose", "--no-verbose").verbose, false);
});

Deno.test("args: every bad flag names the flag and what is allowed", () => {
  assert.match(
    flagError(() => parse("--out", "x", "--pairs", "many")),
    /^--pairs: expected a number, got "many"$/,
  );
  assert.match(
    flagError(() => parse("--out", "x", "--model", "unet")),
    /^--model: "unet" is not allowed; allowed values: tinycd, fc-siam-diff$/,
  );
  assert.match(flagError(() => parse()), /^--out is required$/);
  assert.match(
    flagError(() => parse("--out", "x", "--pairs", "0")),
    /^--pairs: must be ≥ 1 \(got 0\)$/,
  );
  assert.match(
    flagError(() => parse("--out", "x", "--pairs", "2.5")),
    /^--pairs: expected a whole number \(got 2\.5\)$/,
  );
  const unknown = flagError(() => parse("--out", "x", "--pair", "3"));
  assert.match(
    unknown,
    /^unknown flag --pair\. Did you mean --pairs\? Known flags: --out, --pairs/,
  );
  assert.match(flagError(() => parse("--out")), /^--out needs a value$/);
  assert.match(flagError(() => parse("--out", "x", "--verbose=yes")), /--verbose is a switch/);
  assert.match(flagError(() => parse("--out", "x", "extra")), /unexpected argument extra/);
  assert.match(flagError(() => parse("--out", "x", "--lambda", "-1")), /write --lambda=VALUE/);
  assert.match(
    flagError(() => parse("--out", "x", "--lambda=-1")),
    /^--lambda: must be > 0 \(got -1\)$/,
  );
  assert.match(
    flagError(() => parse("--out", "x", "--thresholds", "0.1,x")),
    /--thresholds: expected a number, got "x"/,
  );
});

Deno.test("args: numbers are plain decimals (--iters 0x10 is not 16)", () => {
  for (const bad of ["0x10", "0b1", "0o7", "1_000", "Infinity", "1e", "."]) {
    assert.match(
      flagError(() => parse("--out", "x", "--pairs", bad)),
      new RegExp(`^--pairs: expected a number, got "${bad.replace(".", "\\.")}"$`),
      bad,
    );
  }
  assert.equal(parse("--out", "x", "--pairs", "12").pairs, 12);
  assert.equal(parse("--out", "x", "--pairs", "1e3").pairs, 1000);
  assert.equal(parse("--out", "x", "--lambda", "0.5").lambda, 0.5);
  assert.equal(parse("--out", "x", "--lambda", ".25").lambda, 0.25);
  assert.equal(parse("--out", "x", "--lambda=1e-3", "--pairs", "+3").pairs, 3);
});

Deno.test("args: --help and -h ask for the help text; positionals when allowed", () => {
  for (const h of ["--help", "-h"]) {
    try {
      parse("--pairs", "bad", h);
      assert.fail("expected HelpRequested");
    } catch (e) {
      assert.ok(e instanceof HelpRequested);
      assert.equal(e.help, "usage: test --out DIR");
    }
  }
  const withPos = parseFlagsOrThrow(["a.png", "--out", "x", "b.png"], Schema, {
    ...opts,
    positionals: true,
  });
  assert.deepStrictEqual(withPos._, ["a.png", "b.png"]);
});
