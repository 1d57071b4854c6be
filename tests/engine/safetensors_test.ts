import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import {
  encodeSafetensors,
  loadInto,
  readSafetensors,
  saveTensors,
  type WriteEntry,
  writeSafetensors,
} from "../../engine/safetensors.ts";
import { empty, type Tensor, tensor } from "../../engine/tensor.ts";
import { randArray } from "../util.ts";
import { tempDirSync } from "../temp.ts";

await initDevice();

const FIXTURE = new URL(
  "../../../shared/fixtures/weights/tinycd_levir.safetensors",
  import.meta.url,
).pathname;

/** Run fn, expect it to throw an Error whose message contains `part`; return the error. */
function assertThrows(fn: () => unknown, _type?: unknown, part = ""): Error {
  try {
    fn();
  } catch (e) {
    assert(e instanceof Error, `threw a non-Error: ${e}`);
    assert(
      e.message.includes(part),
      `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(part)}`,
    );
    return e;
  }
  throw new Error(`expected an error containing ${JSON.stringify(part)}`);
}

function sameValues(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  assertEquals(Array.from(a), Array.from(b), what);
}

/** A file built by hand, for dtypes the writer does not produce. */
function rawFile(entries: { key: string; dtype: string; shape: number[]; bytes: number[] }[]) {
  const header: Record<string, unknown> = {};
  let at = 0;
  for (const e of entries) {
    header[e.key] = { dtype: e.dtype, shape: e.shape, data_offsets: [at, at + e.bytes.length] };
    at += e.bytes.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + at);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(entries.flatMap((e) => e.bytes), 8 + json.length);
  return out;
}

const le16 = (v: number[]) => v.flatMap((x) => [x & 0xff, x >> 8]);

const EVERY_WRITABLE: Record<string, WriteEntry> = {
  f64: { dtype: "F64", shape: [3], data: [1e-300, -2.5, Math.PI] },
  f32: { dtype: "F32", shape: [2, 3], data: randArray(6, 1) },
  i64: { dtype: "I64", shape: [4], data: [0, -1, 2 ** 40 + 3, -(2 ** 50)] },
  i32: { dtype: "I32", shape: [5], data: [0, -1, 2 ** 31 - 1, -(2 ** 31), 7] },
  u32: { dtype: "U32", shape: [2], data: [0, 2 ** 32 - 1] },
  u8: { dtype: "U8", shape: [3, 1], data: [0, 255, 17] },
  scalar: { dtype: "I64", shape: [], data: [12345] },
  empty: { dtype: "F32", shape: [0, 4], data: [] },
};

Deno.test("safetensors: every writable dtype round-trips through bytes and files", () => {
  const meta = { format: "pt", note: "round trip" };
  const check = (file: ReturnType<typeof readSafetensors>) => {
    assertEquals([...file.keys()], Object.keys(EVERY_WRITABLE));
    assertEquals(file.metadata, meta);
    for (const [k, e] of Object.entries(EVERY_WRITABLE)) {
      const got = file.get(k)!;
      assertEquals(got.dtype, e.dtype, k);
      assertEquals(got.shape, [...e.shape], k);
      const want = e.dtype === "F32" ? Float32Array.from(e.data) : e.data;
      sameValues(got.data, want, k);
    }
  };
  const bytes = encodeSafetensors(EVERY_WRITABLE, meta);
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assertEquals(headerLen % 8, 0, "data section starts 8-byte aligned");
  check(readSafetensors(bytes));
  const dir = tempDirSync();
  try {
    const path = `${dir}/all.safetensors`;
    writeSafetensors(path, new Map(Object.entries(EVERY_WRITABLE)), meta);
    check(readSafetensors(path));
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["all.safetensors"]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("safetensors: F16, BF16 widen to f32; other integer dtypes read", () => {
  const f16 = [0x3c00, 0xc000, 0x3555, 0x0001, 0x7bff, 0x7c00, 0x8000];
  const bf16 = [0x3f80, 0xc040, 0x4049, 0xff80];
  const file = readSafetensors(rawFile([
    { key: "h", dtype: "F16", shape: [7], bytes: le16(f16) },
    { key: "b", dtype: "BF16", shape: [2, 2], bytes: le16(bf16) },
    { key: "i16", dtype: "I16", shape: [2], bytes: le16([0xffff, 300]) },
    { key: "i8", dtype: "I8", shape: [2], bytes: [0xfe, 5] },
    { key: "flag", dtype: "BOOL", shape: [3], bytes: [1, 0, 1] },
  ]));
  const h = file.get("h")!;
  assertEquals(h.dtype, "F16");
  assert(h.data instanceof Float32Array);
  sameValues(h.data, [1, -2, 0.333251953125, 2 ** -24, 65504, Infinity, -0], "f16");
  const b = file.get("b")!;
  assert(b.data instanceof Float32Array);
  sameValues(b.data, [1, -3, 3.140625, -Infinity], "bf16");
  sameValues(file.get("i16")!.data, [-1, 300], "i16");
  sameValues(file.get("i8")!.data, [-2, 5], "i8");
  sameValues(file.get("flag")!.data, [1, 0, 1], "bool");
});

Deno.test("safetensors: the TinyCD checkpoint lists 279 keys", () => {
  try {
    Deno.statSync(FIXTURE);
  } catch {
    console.log(`skipped: ${FIXTURE} is absent (fixtures live beside the repository)`);
    return;
  }
  const file = readSafetensors(FIXTURE);
  assertEquals(file.size, 279);
  const counts: Record<string, number> = {};
  for (const e of file.values()) counts[e.dtype] = (counts[e.dtype] ?? 0) + 1;
  assertEquals(counts, { F32: 250, I64: 29 });
  const tracked = [...file.entries()].filter(([k]) => k.endsWith("num_batches_tracked"));
  assertEquals(tracked.length, 29);
  for (const [k, e] of tracked) {
    assertEquals(e.shape, [], k);
    assert(Number.isInteger(e.data[0]) && e.data[0] >= 0, k);
  }
  let params = 0;
  for (const [k, e] of file) {
    if (e.dtype === "F32" && !/running_|num_batches/.test(k)) params += e.data.length;
  }
  assertEquals(params, 285128);
});

Deno.test("safetensors: corrupt, truncated and foreign files give errors naming the file", () => {
  const dir = tempDirSync();
  try {
    const good = encodeSafetensors({
      weight: { dtype: "F32", shape: [4, 4], data: randArray(16, 2) },
    });
    const cut = `${dir}/cut.safetensors`;
    Deno.writeFileSync(cut, good.subarray(0, good.length - 5));
    assertThrows(() => readSafetensors(cut), Error, `${cut}: truncated: tensor "weight"`);
    const headerCut = `${dir}/header_cut.safetensors`;
    Deno.writeFileSync(headerCut, good.subarray(0, 20));
    assertThrows(() => readSafetensors(headerCut), Error, `${headerCut}: not a safetensors file`);
    const text = `${dir}/notes.txt`;
    Deno.writeTextFileSync(text, "these are not the tensors you are looking for");
    assertThrows(() => readSafetensors(text), Error, `${text}: not a safetensors file`);
    const tiny = `${dir}/tiny.bin`;
    Deno.writeFileSync(tiny, new Uint8Array([1, 2, 3]));
    assertThrows(() => readSafetensors(tiny), Error, `${tiny}: only 3 bytes`);
    assertThrows(
      () => readSafetensors(`${dir}/absent.safetensors`),
      Error,
      `${dir}/absent.safetensors: cannot read`,
    );
    const badDtype = rawFile([{ key: "x", dtype: "F8_E4M3", shape: [1], bytes: [0] }]);
    assertThrows(
      () => readSafetensors(badDtype, "odd.safetensors"),
      Error,
      'odd.safetensors: tensor "x"',
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("safetensors: a failed write leaves no file, partial or temporary", () => {
  const dir = tempDirSync();
  try {
    const path = `${dir}/w.safetensors`;
    writeSafetensors(path, { a: { dtype: "U8", shape: [2], data: [1, 2] } });
    const before = Deno.readFileSync(path);
    assertThrows(
      () => writeSafetensors(path, { a: { dtype: "U8", shape: [2], data: [1, 300] } }),
      Error,
      'tensor "a"',
    );
    assertEquals(Deno.readFileSync(path), before, "the old file is untouched");
    assertThrows(
      () => writeSafetensors(`${dir}/no/such/dir/x.safetensors`, EVERY_WRITABLE),
      Error,
      "cannot write",
    );
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["w.safetensors"]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("safetensors: saveTensors and loadInto round-trip GPU tensors of every dtype", async () => {
  const dir = tempDirSync();
  const made: Tensor[] = [];
  const t = (x: Tensor) => (made.push(x), x);
  try {
    const src = {
      "conv.weight": t(tensor(randArray(3 * 5 * 7, 3), [3, 5, 7])),
      "conv.bias": t(tensor(randArray(3, 4), [3])),
      "bn.num_batches_tracked": t(tensor([41], [], "i32")),
      idx: t(tensor([4000000000, 1, 0], [3], "u32")),
      mask: t(tensor([0, 1, 255, 3, 9], [5], "u8")),
    };
    const path = `${dir}/model.safetensors`;
    await saveTensors(path, src, { epoch: "3" });
    const file = readSafetensors(path);
    assertEquals(file.metadata, { epoch: "3" });
    assertEquals(file.get("mask")!.dtype, "U8");
    const dst = Object.fromEntries(
      Object.entries(src).map(([k, s]) => [k, t(empty(s.shape, s.dtype))]),
    );
    const res = loadInto(dst, path);
    assertEquals(res.loaded.length, 5);
    for (const k of Object.keys(src) as (keyof typeof src)[]) {
      sameValues(await dst[k].read(), await src[k].read(), k);
    }
  } finally {
    for (const x of made) x.dispose();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("safetensors: loadInto accepts I64 into i32 and F16 into f32", async () => {
  const count = tensor([0], [], "i32");
  const w = tensor([0, 0], [2]);
  const bytes = rawFile([
    { key: "n", dtype: "I64", shape: [], bytes: [7, 1, 0, 0, 0, 0, 0, 0] },
    { key: "w", dtype: "F16", shape: [2], bytes: le16([0x3c00, 0xc000]) },
  ]);
  loadInto({ n: count, w }, bytes);
  assertEquals(await count.item(), 263);
  sameValues(await w.read(), [1, -2], "w");
  count.dispose();
  w.dispose();
});

const tooBigFor = (v: number) => encodeSafetensors({ c: { dtype: "I64", shape: [1], data: [v] } });

Deno.test("safetensors: loadInto errors name the keys at fault", () => {
  const a = tensor(randArray(6, 5), [2, 3]);
  const b = tensor([1, 2, 3], [3]);
  const c = tensor([1], [1], "i32");
  try {
    const file = encodeSafetensors({
      a: { dtype: "F32", shape: [3, 2], data: randArray(6, 6) },
      b: { dtype: "F32", shape: [3], data: [4, 5, 6] },
      extra: { dtype: "F32", shape: [1], data: [0] },
    });
    const err = assertThrows(() => loadInto({ a, b, c }, file, { name: "ckpt.safetensors" }));
    const msg = (err as Error).message;
    assert(msg.startsWith("ckpt.safetensors: cannot load"), msg);
    assert(msg.includes('"a": file has shape [3, 2], tensor has [2, 3]'), msg);
    assert(msg.includes("missing from the file: c"), msg);
    assert(msg.includes("unexpected in the file: extra"), msg);
    // Non-strict: missing and unexpected keys pass, a shape mismatch still fails.
    assertThrows(
      () => loadInto({ a, b, c }, file, { strict: false }),
      Error,
      '"a": file has shape',
    );
    const res = loadInto({ b, c }, file, { strict: false });
    assertEquals(res, { loaded: ["b"], missing: ["c"], unexpected: ["a", "extra"] });
    const wrongType = encodeSafetensors({ c: { dtype: "F32", shape: [1], data: [1] } });
    assertThrows(() => loadInto({ c }, wrongType), Error, '"c": file has dtype F32, tensor is i32');
    const gone = tensor([1], [1], "i32");
    gone.dispose();
    assertThrows(() => loadInto({ c: gone }, tooBigFor(2)), Error, '"c": the tensor is disposed');
    const tooBig = encodeSafetensors({ c: { dtype: "I64", shape: [1], data: [2 ** 40] } });
    assertThrows(() => loadInto({ c }, tooBig), Error, '"c": value 1099511627776 does not fit i32');
  } finally {
    a.dispose();
    b.dispose();
    c.dispose();
  }
});

Deno.test("safetensors: the TinyCD checkpoint uploads into matching GPU tensors", async () => {
  try {
    Deno.statSync(FIXTURE);
  } catch {
    console.log(`skipped: ${FIXTURE} is absent (fixtures live beside the repository)`);
    return;
  }
  const file = readSafetensors(FIXTURE);
  const targets = new Map<string, Tensor>();
  for (const [k, e] of file) targets.set(k, empty(e.shape, e.dtype === "I64" ? "i32" : "f32"));
  try {
    loadInto(targets, file);
    const [k, e] = [...file.entries()].find(([, e]) => e.dtype === "F32" && e.data.length > 100)!;
    sameValues(await targets.get(k)!.read(), e.data, k);
  } finally {
    for (const t of targets.values()) t.dispose();
  }
});
