import assert from "node:assert/strict";
import { encode } from "fast-png";
import {
  decodeGrayPng,
  decodeRgbPng,
  encodeGrayPng,
  encodeRgbPng,
  PngError,
  readRgbPng,
  writeRgbPng,
} from "../../data/png.ts";
import { chunk } from "../../data/png_encode.ts";
import { rng } from "../util.ts";
import { tempDir } from "../temp.ts";

const W = 7, H = 5; // odd sizes catch stride mistakes
const r = rng(1);
const rgb = Uint8Array.from({ length: W * H * 3 }, () => Math.floor(r() * 256));
const gray = Uint8Array.from({ length: W * H }, () => Math.floor(r() * 256));

Deno.test("png: RGB and gray round trip through our writer and fast-png's reader", () => {
  const a = decodeRgbPng(encodeRgbPng({ width: W, height: H, data: rgb }), "a.png");
  assert.deepStrictEqual([a.width, a.height], [W, H]);
  assert.deepStrictEqual(a.data, rgb);
  const g = decodeGrayPng(encodeGrayPng({ width: W, height: H, data: gray }), "g.png");
  assert.deepStrictEqual(g.data, gray);
});

Deno.test("png: alpha is dropped, grayscale expanded, 16-bit scaled, palettes applied", () => {
  const rgba = new Uint8Array(W * H * 4);
  for (let i = 0; i < W * H; i++) rgba.set([...rgb.subarray(3 * i, 3 * i + 3), 77], 4 * i);
  assert.deepStrictEqual(
    decodeRgbPng(encode({ width: W, height: H, data: rgba, channels: 4 }), "x").data,
    rgb,
  );

  const g = decodeRgbPng(encode({ width: W, height: H, data: gray, channels: 1 }), "x");
  for (let i = 0; i < W * H; i++) {
    assert.deepStrictEqual([...g.data.subarray(3 * i, 3 * i + 3)], [gray[i], gray[i], gray[i]]);
  }

  const ga = new Uint8Array(W * H * 2);
  for (let i = 0; i < W * H; i++) ga.set([gray[i], 3], 2 * i);
  assert.deepStrictEqual(
    decodeGrayPng(encode({ width: W, height: H, data: ga, channels: 2 }), "x").data,
    gray,
  );

  const deep = Uint16Array.from(rgb, (v) => v * 257);
  const d = decodeRgbPng(encode({ width: W, height: H, data: deep, channels: 3, depth: 16 }), "x");
  assert.deepStrictEqual(d.data, rgb);

  // 1-bit grayscale label (packed bits, rows padded to bytes) reads as 0/255.
  const bits = new Uint8Array(H); // W = 7 → one byte per row
  for (let y = 0; y < H; y++) bits[y] = 0b1010_0000 >> (y % 2);
  const one = decodeGrayPng(
    encode({ width: W, height: H, data: bits, channels: 1, depth: 1 }),
    "x",
  );
  assert.deepStrictEqual([...one.data.subarray(0, W)], [255, 0, 255, 0, 0, 0, 0]);
  assert.deepStrictEqual([...one.data.subarray(W, 2 * W)], [0, 255, 0, 255, 0, 0, 0]);

  // Palette label with a non-gray palette reads as indices (as Pillow/MMSegmentation do).
  const idx = Uint8Array.from({ length: W * H }, (_, i) => i % 2);
  const pal = encode({
    width: W,
    height: H,
    data: idx,
    channels: 1,
    palette: [[0, 0, 0], [255, 0, 0]],
  });
  assert.deepStrictEqual(decodeGrayPng(pal, "x").data, idx);
  assert.deepStrictEqual([...decodeRgbPng(pal, "x").data.subarray(3, 6)], [255, 0, 0]);
});

/** The error a call throws, checked to be a PngError. */
function pngError(fn: () => unknown): PngError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof PngError, `expected a PngError, got ${e}`);
    return e;
  }
  throw new Error("expected an error");
}

Deno.test("png: errors name the file and the problem", async () => {
  const text = new TextEncoder().encode("hello, not an image");
  let e = pngError(() => decodeRgbPng(text, "notes.png"));
  assert.match(e.message, /^notes\.png: not a PNG/);

  const good = encodeRgbPng({ width: W, height: H, data: rgb });
  e = pngError(() => decodeRgbPng(good.subarray(0, good.length - 30), "cut.png"));
  assert.match(e.message, /^cut\.png: corrupt PNG/);

  const flipped = good.slice();
  flipped[60] ^= 0xff; // inside IDAT: the chunk CRC no longer matches
  e = pngError(() => decodeRgbPng(flipped, "flip.png"));
  assert.match(e.message, /^flip\.png: corrupt PNG/);

  const depth4 = good.slice();
  depth4[24] = 4; // RGB at 4 bits per sample does not exist
  e = pngError(() => decodeRgbPng(depth4, "d4.png"));
  assert.match(e.message, /^d4\.png: unexpected bit depth 4 for colour type RGB/);

  const dir = await tempDir();
  try {
    await writeRgbPng(`${dir}/ok.png`, { width: W, height: H, data: rgb });
    assert.deepStrictEqual((await readRgbPng(`${dir}/ok.png`)).data, rgb);
    const missing = `${dir}/missing.png`;
    await assert.rejects(readRgbPng(missing), { message: `${missing}: file not found` });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** `png` with an sBIT chunk of `bits` per channel inserted after IHDR (8 + 25 bytes). */
function withSbit(png: Uint8Array, bits: number, channels: number): Uint8Array {
  const sbit = chunk("sBIT", new Uint8Array(channels).fill(bits));
  return Uint8Array.from([...png.subarray(0, 33), ...sbit, ...png.subarray(33)]);
}

Deno.test("png: 12-bit data in 16-bit PNGs scales by sBIT or is refused; 16-bit 0/1 labels", () => {
  // 12-bit sensor values stored unscaled (max 4095): /257 would leave 17 grey levels.
  const twelve = Uint16Array.from(rgb, (v) => Math.round((v * 4095) / 255));
  const raw = encode({ width: W, height: H, data: twelve, channels: 3, depth: 16 });
  const e = pngError(() => decodeRgbPng(raw, "s12.png"));
  assert.match(e.message, /^s12\.png: 16-bit PNG whose values never exceed \d+ \(≤ 4095\).*sBIT/);
  // With sBIT = 12 the values scale by 4095: every 8-bit level comes back.
  const img = decodeRgbPng(withSbit(raw, 12, 3), "s12.png");
  assert.deepStrictEqual(img.data, rgb);
  assert.deepStrictEqual(img.source, { color: "rgb", alpha: "none", bits: 12 });
  // sBIT with values already scaled to 16 bits (the PNG rule) reduces as usual.
  const scaled = encode({
    width: W,
    height: H,
    data: Uint16Array.from(rgb, (v) => v * 257),
    channels: 3,
    depth: 16,
  });
  assert.deepStrictEqual(decodeRgbPng(withSbit(scaled, 12, 3), "x").data, rgb);
  // A 16-bit label holding 0/1 keeps its values (it read as all 0 before).
  const lab = Uint16Array.from({ length: W * H }, (_, i) => i % 3 === 0 ? 1 : 0);
  const l = decodeGrayPng(encode({ width: W, height: H, data: lab, channels: 1, depth: 16 }), "l");
  assert.deepStrictEqual([...l.data], [...lab]);
});

Deno.test("png: the source says what was dropped: alpha (opaque or not) and gray", () => {
  const rgba = new Uint8Array(W * H * 4).fill(255);
  assert.equal(
    decodeRgbPng(encode({ width: W, height: H, data: rgba, channels: 4 }), "x").source?.alpha,
    "opaque",
  );
  rgba[7] = 10;
  assert.equal(
    decodeRgbPng(encode({ width: W, height: H, data: rgba, channels: 4 }), "x").source?.alpha,
    "transparent",
  );
  const g = decodeRgbPng(encode({ width: W, height: H, data: gray, channels: 1 }), "x");
  assert.deepStrictEqual(g.source, { color: "gray", alpha: "none", bits: 8 });
});
