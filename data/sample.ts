// One pair, decoded: the checks the dataset validator runs on it, and the conversion to the
// tensors a batch holds. Runs inside decode workers (see decode_worker.ts).

import type { Normalize } from "../engine/normalize.ts";
import { carOf } from "./car.ts";
import { type LabelEncoding, labelEncoding, labelValues } from "./label.ts";
import type { PairFiles } from "./pair_files.ts";
import { type GrayImage, PngError, readGrayPng, readRgbPng, type RgbImage } from "./png.ts";

/** One problem with one file, and how to fix it. */
export interface Problem {
  file: string;
  problem: string;
  fix: string;
}

/** Something the check decided about a file that the user should hear of (not an error). */
export interface CheckNote {
  file: string;
  /** Short, the same for every file it applies to (the summary counts them). */
  note: string;
}

export interface PairCheck {
  name: string;
  problems: Problem[];
  notes?: CheckNote[];
  width: number;
  height: number;
  car: number;
  encoding: LabelEncoding | null;
}

/** Per-channel normalisation applied after scaling to [0, 1]: (x − mean) / std. */
export type { Normalize };

/** Where to crop: a `size`×`size` window at fractions (u, v) of the free range. */
export interface CropSpec {
  size: number;
  u: number;
  v: number;
}

export interface SampleTensors {
  name: string;
  width: number;
  height: number;
  /** [3, H, W] float32. */
  a: Float32Array;
  b: Float32Array;
  /** [H, W] 0/1. */
  label: Uint32Array;
}

interface Size {
  width: number;
  height: number;
}

function sizeOf(img: Size | null): Size | null {
  return img && { width: img.width, height: img.height };
}

const FIX_CORRUPT = "re-export the file as PNG (8-bit RGB for images, 8-bit grayscale for labels)";

async function tryRead<T>(
  path: string,
  read: (p: string) => Promise<T>,
  problems: Problem[],
): Promise<T | null> {
  try {
    return await read(path);
  } catch (e) {
    const problem = e instanceof PngError ? e.problem : (e as Error).message;
    problems.push({ file: path, problem, fix: FIX_CORRUPT });
    return null;
  }
}

/** Decode all three files of a pair and report everything wrong with them. */
export async function inspectPair(pair: PairFiles): Promise<PairCheck> {
  const problems: Problem[] = [];
  const notes: CheckNote[] = [];
  // Sequential, keeping only sizes of A and B: at most one decoded image alive per worker.
  const imgA = await tryRead(pair.a, readRgbPng, problems);
  const srcA = imgA?.source;
  const sizes: [string, string, Size | null][] = [["A", pair.a, sizeOf(imgA)]];
  const imgB = await tryRead(pair.b, readRgbPng, problems);
  sizes.push(["B", pair.b, sizeOf(imgB)]);
  for (const [file, src] of [[pair.a, srcA], [pair.b, imgB?.source]] as const) {
    if (src?.alpha === "transparent") {
      notes.push({ file, note: "alpha channel with see-through pixels: ignored (read as opaque)" });
    }
    if (src && src.bits > 8 && src.bits < 16) {
      notes.push({ file, note: `${src.bits}-bit data (sBIT) scaled to 8 bits by its real depth` });
    }
  }
  if (srcA && imgB?.source && srcA.color !== imgB.source.color) {
    const [gray, rgb] = srcA.color === "gray" ? ["A", "B"] : ["B", "A"];
    problems.push({
      file: gray === "A" ? pair.a : pair.b,
      problem: `${gray} is grayscale but ${rgb}/${pair.name} is colour: the model would read the ` +
        "lost colour as change",
      fix: "give both dates the same colour type (convert the grayscale one to RGB only if the " +
        "colour one is really gray, else use colour images for both)",
    });
  }
  const label = await tryRead(pair.label, readGrayPng, problems);
  sizes.push(["label", pair.label, sizeOf(label)]);
  const known = sizes.filter((s) => s[2] !== null) as [string, string, Size][];
  const [refFolder, , ref] = known[0] ?? ["", "", { width: 0, height: 0 }];
  for (const [, file, size] of known.slice(1)) {
    if (size.width !== ref.width || size.height !== ref.height) {
      problems.push({
        file,
        problem: `size ${size.width}×${size.height} differs from ${refFolder}/${pair.name}.png ` +
          `(${ref.width}×${ref.height})`,
        fix: "A, B and label of a pair must have the same size; re-export or crop them alike",
      });
    }
  }
  let encoding: LabelEncoding | null = null;
  let car = 0;
  if (label) {
    const values = labelValues(label.data);
    encoding = labelEncoding(values);
    if (encoding === null) {
      const bad = values.filter((v) => v !== 0 && v !== 1 && v !== 255);
      const shown = bad.length > 12 ? [...bad.slice(0, 12), "…"] : bad;
      problems.push({
        file: pair.label,
        problem: `label is not binary: it holds the values {${
          values.length > 16
            ? [
              ...values.slice(0, 16),
              "…",
            ].join(", ")
            : values.join(", ")
        }}; offending: ${shown.join(", ")}`,
        fix: "labels must hold only 0 and 255 (or only 0 and 1); threshold at 128 and re-save " +
          "without anti-aliasing or JPEG compression",
      });
    }
    car = carOf(label.data);
  }
  return {
    name: pair.name,
    problems,
    notes,
    width: ref.width,
    height: ref.height,
    car,
    encoding,
  };
}

/** Read a pair as tensors, optionally cropped and normalised. Throws naming the file at fault. */
export async function loadSample(
  pair: PairFiles,
  crop?: CropSpec,
  normalize?: Normalize,
): Promise<SampleTensors> {
  const [a, b, label] = await Promise.all([
    readRgbPng(pair.a),
    readRgbPng(pair.b),
    readGrayPng(pair.label),
  ]);
  for (const [path, img] of [[pair.b, b], [pair.label, label]] as const) {
    if (img.width !== a.width || img.height !== a.height) {
      throw new Error(
        `${path}: size ${img.width}×${img.height} differs from ${pair.a} (${a.width}×${a.height})`,
      );
    }
  }
  let x0 = 0, y0 = 0, w = a.width, h = a.height;
  if (crop) {
    if (crop.size > a.width || crop.size > a.height) {
      throw new Error(
        `${pair.a}: image ${a.width}×${a.height} is smaller than the crop size ${crop.size}`,
      );
    }
    x0 = Math.floor(crop.u * (a.width - crop.size + 1));
    y0 = Math.floor(crop.v * (a.height - crop.size + 1));
    w = h = crop.size;
  }
  return {
    name: pair.name,
    width: w,
    height: h,
    a: toChw(a, x0, y0, w, h, normalize),
    b: toChw(b, x0, y0, w, h, normalize),
    label: toBinary(label, x0, y0, w, h),
  };
}

/** HWC uint8 window → CHW float32, (v / 255 − mean) / std. */
/** Pixels of a w×h window at (x0, y0) as [3, h, w] floats in [0, 1], optionally normalised. */
export function toChw(
  img: RgbImage,
  x0: number,
  y0: number,
  w: number,
  h: number,
  normalize?: Normalize,
): Float32Array {
  const out = new Float32Array(3 * w * h);
  const src = img.data, W = img.width;
  for (let c = 0; c < 3; c++) {
    const std = normalize ? normalize.std[c] : 1;
    const scale = 1 / (255 * std);
    const shift = normalize ? -normalize.mean[c] / std : 0;
    const plane = c * w * h;
    for (let y = 0; y < h; y++) {
      let s = ((y0 + y) * W + x0) * 3 + c;
      const row = plane + y * w;
      for (let x = 0; x < w; x++, s += 3) out[row + x] = src[s] * scale + shift;
    }
  }
  return out;
}

function toBinary(img: GrayImage, x0: number, y0: number, w: number, h: number): Uint32Array {
  const out = new Uint32Array(w * h);
  const src = img.data, W = img.width;
  for (let y = 0; y < h; y++) {
    const s = (y0 + y) * W + x0;
    for (let x = 0; x < w; x++) {
      const v = src[s + x];
      out[y * w + x] = v === 1 || v > 127 ? 1 : 0;
    }
  }
  return out;
}
