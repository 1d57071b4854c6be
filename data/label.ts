// Change labels: which pixel values a label file may hold and how they become 0/1.
// Allowed encodings are {0, 255} (JL1-CD, LEVIR-CD) and {0, 1}; a pixel is "changed" when it is
// 1 or above 127, which reads both encodings the same way.

export type LabelEncoding = "0/255" | "0/1";

/** Changed-or-not for one raw label value. */
export function isChanged(v: number): boolean {
  return v === 1 || v > 127;
}

/** Raw label values → 0/1 bytes. */
export function binarizeLabel(raw: Uint8Array): Uint8Array {
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw[i] === 1 || raw[i] > 127 ? 1 : 0;
  return out;
}

/** The distinct values of a label, ascending. */
export function labelValues(raw: Uint8Array): number[] {
  const seen = new Uint8Array(256);
  for (let i = 0; i < raw.length; i++) seen[raw[i]] = 1;
  const values: number[] = [];
  for (let v = 0; v < 256; v++) if (seen[v]) values.push(v);
  return values;
}

/**
 * The encoding a set of label values fits, or null when it fits none (for instance {0, 1, 255},
 * or anti-aliased edges). An all-zero label fits both; it is reported as "0/255".
 */
export function labelEncoding(values: number[]): LabelEncoding | null {
  if (values.every((v) => v === 0 || v === 255)) return "0/255";
  if (values.every((v) => v === 0 || v === 1)) return "0/1";
  return null;
}
