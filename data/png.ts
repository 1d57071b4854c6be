// PNG reading (fast-png) and writing (png_encode.ts) for the two kinds of files a change-detection
// dataset holds: RGB images (8-bit, interleaved) and single-channel labels. Every error names the
// file and what to do. Decisions on odd files: 16-bit images scale by their real bit depth (sBIT)
// or, when they look like unscaled 12-bit data without one, are refused; alpha is dropped and
// reported (RgbImage.source) so the dataset check can say so.

import { decode } from "fast-png";
import { encodePng } from "./png_encode.ts";

/** 8-bit RGB pixels, row-major, interleaved (HWC). */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
  /** What the file held, for the dataset check's decisions (set by decodeRgbPng). */
  source?: PngSource;
}

/** The colour form of a decoded file and what reading it to 8-bit RGB did. */
export interface PngSource {
  /** RGB for colour and palette files, gray for grayscale ones. */
  color: "rgb" | "gray";
  /** Alpha that was dropped: "transparent" when some pixel was not opaque. */
  alpha: "none" | "opaque" | "transparent";
  /** Bits per sample the values were scaled from: 8 or less, 12 (sBIT), 16. */
  bits: number;
}

/** 8-bit single-channel pixels, row-major. */
export interface GrayImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** A PNG that cannot be used; `file` is the path (or label) it came from. */
export class PngError extends Error {
  constructor(readonly file: string, readonly problem: string) {
    super(`${file}: ${problem}`);
    this.name = "PngError";
  }
}

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

const COLOR_TYPES: Record<number, { name: string; depths: number[] }> = {
  0: { name: "grayscale", depths: [1, 2, 4, 8, 16] },
  2: { name: "RGB", depths: [8, 16] },
  3: { name: "indexed", depths: [1, 2, 4, 8] },
  4: { name: "grayscale+alpha", depths: [8, 16] },
  6: { name: "RGBA", depths: [8, 16] },
};

export interface PngHeader {
  width: number;
  height: number;
  depth: number;
  colorType: number;
  interlaced: boolean;
}

/** Read and check the IHDR chunk only: cheap, and gives precise errors before a full decode. */
export function readPngHeader(bytes: Uint8Array, file: string): PngHeader {
  if (bytes.length < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) {
    throw new PngError(file, "not a PNG (the PNG signature is missing); convert it to PNG");
  }
  if (bytes.length < 33) throw new PngError(file, "corrupt PNG (file is truncated)");
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = String.fromCharCode(...bytes.subarray(12, 16));
  if (type !== "IHDR") throw new PngError(file, "corrupt PNG (first chunk is not IHDR)");
  const header: PngHeader = {
    width: v.getUint32(16),
    height: v.getUint32(20),
    depth: bytes[24],
    colorType: bytes[25],
    interlaced: bytes[28] === 1,
  };
  const kind = COLOR_TYPES[header.colorType];
  if (!kind) throw new PngError(file, `corrupt PNG (unknown colour type ${header.colorType})`);
  if (!kind.depths.includes(header.depth)) {
    throw new PngError(
      file,
      `unexpected bit depth ${header.depth} for colour type ${kind.name} (allowed: ${
        kind.depths.join(", ")
      }); re-save it as 8-bit`,
    );
  }
  if (header.width === 0 || header.height === 0) {
    throw new PngError(file, "corrupt PNG (zero width or height)");
  }
  if (header.interlaced && header.depth < 8) {
    throw new PngError(
      file,
      `interlaced PNG with bit depth ${header.depth} is not supported; re-save it without interlacing`,
    );
  }
  return header;
}

interface Decoded {
  header: PngHeader;
  /** Samples scaled to 8 bits, `channels` per pixel (indexed: palette index, 1 per pixel). */
  samples: Uint8Array;
  channels: number;
  palette?: number[][];
  /** Bits per sample the 8-bit values were scaled from. */
  bits: number;
}

/** Significant bits of the first colour channel from an sBIT chunk, or null without one. */
export function significantBits(bytes: Uint8Array): number | null {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = 8; at + 8 <= bytes.length;) {
    const len = v.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    if (type === "sBIT" && len >= 1 && at + 9 <= bytes.length) return bytes[at + 8];
    if (type === "IDAT" || type === "IEND") return null;
    at += 12 + len;
  }
  return null;
}

/**
 * 16-bit samples → 8 bits. PNG stores fewer significant bits scaled up to the full range, which
 * 65535 → 255 reduces correctly. Sensor data (12-bit, max 4095) is often stored unscaled: read as
 * 16-bit it would be 17 grey levels. With an sBIT chunk saying so and values within its range it
 * is scaled by its real depth; without one, images whose values never pass 4095 are refused.
 * Labels whose values stay within 0..255 (0/1 or 0/255 written as 16-bit) keep their values.
 */
function reduce16(
  src: Uint16Array,
  n: number,
  bytes: Uint8Array,
  file: string,
  kind: "image" | "label",
): { samples: Uint8Array; bits: number } {
  let max = 0;
  for (let i = 0; i < n; i++) if (src[i] > max) max = src[i];
  const samples = new Uint8Array(n);
  if (kind === "label" && max <= 255) {
    samples.set(src.subarray(0, n));
    return { samples, bits: 8 };
  }
  const sbit = significantBits(bytes);
  if (sbit !== null && sbit < 16 && max < 2 ** sbit) {
    const top = 2 ** sbit - 1;
    for (let i = 0; i < n; i++) samples[i] = Math.round((src[i] * 255) / top);
    return { samples, bits: sbit };
  }
  if (sbit === null && kind === "image" && max > 0 && max <= 4095) {
    throw new PngError(
      file,
      `16-bit PNG whose values never exceed ${max} (≤ 4095): this looks like 12-bit (or lower) ` +
        "sensor data stored unscaled, which would read as a nearly black image; scale it to 8-bit " +
        "(value·255/4095) or to the 16-bit range, or mark the real depth with an sBIT chunk",
    );
  }
  // 65535 → 255 with rounding: the usual 16 → 8 bit reduction.
  for (let i = 0; i < n; i++) samples[i] = (src[i] + 128) / 257;
  return { samples, bits: 16 };
}

function decodeSamples(
  bytes: Uint8Array,
  file: string,
  kind: "image" | "label" = "image",
): Decoded {
  const header = readPngHeader(bytes, file);
  let png;
  try {
    png = decode(bytes, { checkCrc: true });
  } catch (e) {
    throw new PngError(file, `corrupt PNG (${(e as Error).message})`);
  }
  const { width, height, depth } = header;
  const channels = png.channels;
  const n = width * height * channels;
  const indexed = header.colorType === 3;
  let samples: Uint8Array;
  let bits = Math.min(depth, 8);
  if (depth === 16) {
    const src = png.data as Uint16Array;
    if (src.length < n) throw new PngError(file, "corrupt PNG (image data is too short)");
    ({ samples, bits } = reduce16(src, n, bytes, file, kind));
  } else if (depth === 8) {
    const src = png.data as Uint8Array;
    if (src.length < n) throw new PngError(file, "corrupt PNG (image data is too short)");
    samples = src.length === n ? src : src.subarray(0, n);
  } else {
    samples = unpackLowDepth(png.data as Uint8Array, width, height, depth, !indexed, file);
  }
  return { header, samples, channels, palette: indexed ? png.palette : undefined, bits };
}

/** Rows of 1/2/4-bit samples are packed and byte-padded; spread them to one byte each. */
function unpackLowDepth(
  src: Uint8Array,
  width: number,
  height: number,
  depth: number,
  scale: boolean,
  file: string,
): Uint8Array {
  const rowBytes = Math.ceil((width * depth) / 8);
  if (src.length < rowBytes * height) {
    throw new PngError(file, "corrupt PNG (image data is too short)");
  }
  const out = new Uint8Array(width * height);
  const mask = (1 << depth) - 1;
  // Grayscale values are stretched to 0..255 (PNG semantics); palette indices stay as they are.
  const factor = scale ? 255 / mask : 1;
  for (let y = 0; y < height; y++) {
    const row = y * rowBytes;
    for (let x = 0; x < width; x++) {
      const bit = x * depth;
      const v = (src[row + (bit >> 3)] >> (8 - depth - (bit & 7))) & mask;
      out[y * width + x] = v * factor;
    }
  }
  return out;
}

/** Alpha of the samples (last channel of 2 or 4): none, all opaque, or some pixel see-through. */
function alphaOf(samples: Uint8Array, channels: number, n: number): PngSource["alpha"] {
  if (channels !== 2 && channels !== 4) return "none";
  for (let i = 0; i < n; i++) {
    if (samples[channels * i + channels - 1] !== 255) return "transparent";
  }
  return "opaque";
}

/** Decode any PNG to 8-bit RGB: alpha is dropped (reported in `source`), grayscale expanded,
 * palettes applied. */
export function decodeRgbPng(bytes: Uint8Array, file: string): RgbImage {
  const { header, samples, channels, palette, bits } = decodeSamples(bytes, file);
  const { width, height } = header;
  const n = width * height;
  const source: PngSource = {
    color: palette || channels >= 3 ? "rgb" : "gray",
    alpha: alphaOf(samples, channels, n),
    bits,
  };
  if (channels === 3) return { width, height, data: samples, source };
  const out = new Uint8Array(n * 3);
  if (palette) {
    for (let i = 0; i < n; i++) {
      const c = palette[samples[i]];
      if (!c) throw new PngError(file, `corrupt PNG (palette index ${samples[i]} out of range)`);
      out[3 * i] = c[0];
      out[3 * i + 1] = c[1];
      out[3 * i + 2] = c[2];
    }
  } else if (channels === 4) {
    for (let i = 0; i < n; i++) {
      out[3 * i] = samples[4 * i];
      out[3 * i + 1] = samples[4 * i + 1];
      out[3 * i + 2] = samples[4 * i + 2];
    }
  } else {
    for (let i = 0; i < n; i++) {
      const g = samples[channels * i];
      out[3 * i] = g;
      out[3 * i + 1] = g;
      out[3 * i + 2] = g;
    }
  }
  return { width, height, data: out, source };
}

/**
 * Decode a label PNG to one 8-bit channel. Colour labels count a pixel by its brightest channel
 * (white or pure red both read 255). Palette labels use the palette's gray level when the palette
 * is gray, else the index (as Pillow and MMSegmentation read them).
 */
export function decodeGrayPng(bytes: Uint8Array, file: string): GrayImage {
  const { header, samples, channels, palette } = decodeSamples(bytes, file, "label");
  const { width, height } = header;
  const n = width * height;
  if (channels === 1 && !palette) return { width, height, data: samples };
  const out = new Uint8Array(n);
  if (palette) {
    const gray = palette.every((c) => c[0] === c[1] && c[1] === c[2]);
    for (let i = 0; i < n; i++) out[i] = gray ? (palette[samples[i]]?.[0] ?? 0) : samples[i];
  } else if (channels === 2) {
    for (let i = 0; i < n; i++) out[i] = samples[2 * i];
  } else {
    for (let i = 0; i < n; i++) {
      const j = channels * i;
      out[i] = Math.max(samples[j], samples[j + 1], samples[j + 2]);
    }
  }
  return { width, height, data: out };
}

/** zlib level 1–9; the RLE strategy makes the level matter little for speed. */
export interface EncodeOptions {
  level?: number;
}

export function encodeRgbPng(img: RgbImage, opts: EncodeOptions = {}): Uint8Array {
  checkSize(img, 3);
  return encodePng(img.width, img.height, 3, img.data, opts.level);
}

export function encodeGrayPng(img: GrayImage, opts: EncodeOptions = {}): Uint8Array {
  checkSize(img, 1);
  return encodePng(img.width, img.height, 1, img.data, opts.level);
}

function checkSize(img: { width: number; height: number; data: Uint8Array }, channels: number) {
  if (img.data.length !== img.width * img.height * channels) {
    throw new Error(
      `image data has ${img.data.length} bytes, expected ${img.width}×${img.height}×${channels}`,
    );
  }
}

async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new PngError(path, "file not found");
    throw new PngError(path, `cannot read (${(e as Error).message})`);
  }
}

export async function readRgbPng(path: string): Promise<RgbImage> {
  return decodeRgbPng(await readBytes(path), path);
}

export async function readGrayPng(path: string): Promise<GrayImage> {
  return decodeGrayPng(await readBytes(path), path);
}

export async function writeRgbPng(path: string, img: RgbImage, opts?: EncodeOptions) {
  await Deno.writeFile(path, encodeRgbPng(img, opts));
}

export async function writeGrayPng(path: string, img: GrayImage, opts?: EncodeOptions) {
  await Deno.writeFile(path, encodeGrayPng(img, opts));
}
