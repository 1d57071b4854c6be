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
import { rng } from "../util.ts";

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

  const dir = await Deno.makeTempDir();
  try {
    await writeRgbPng(`${dir}/ok.png`, { width: W, height: H, data: rgb });
    assert.deepStrictEqual((await readRgbPng(`${dir}/ok.png`)).data, rgb);
    const missing = `${dir}/missing.png`;
    await assert.rejects(readRgbPng(missing), { message: `${missing}: file not found` });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
