// CAR histograms as a self-contained SVG, one panel per split side by side (like Fig. 5 of the
// JL1-CD paper): bins of CAR on x, pair counts on y (linear or log), optional threshold lines.

export interface CarSeries {
  /** Panel title, e.g. "train". */
  label: string;
  /** CAR values in [0, 1]. */
  cars: readonly number[];
}

export interface HistogramOptions {
  /** Equal-width bins over [0, 1] (default 20, i.e. 5 % each). */
  bins?: number;
  /** Logarithmic count axis (default false); empty bins then draw nothing. */
  logScale?: boolean;
  title?: string;
  /** Vertical dashed lines at these CAR values (e.g. partition thresholds). */
  thresholds?: readonly number[];
  panelWidth?: number;
  panelHeight?: number;
}

/** Counts per bin; CAR = 1 falls in the last bin. */
export function histogram(cars: readonly number[], bins: number): number[] {
  const counts = new Array(bins).fill(0);
  for (const c of cars) counts[Math.min(bins - 1, Math.max(0, Math.floor(c * bins)))]++;
  return counts;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Round tick values 0, step, 2·step, … covering max with step 1, 2 or 5 × 10^k. */
function linearTicks(max: number): number[] {
  const raw = Math.max(1, max) / 5;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw)!;
  const n = Math.ceil(max / step);
  return Array.from({ length: n + 1 }, (_, i) => i * step);
}

const fmt = (v: number) => (Math.round(v * 100) / 100).toString();

export function carHistogramSvg(series: readonly CarSeries[], opts: HistogramOptions = {}): string {
  const bins = opts.bins ?? 20;
  if (!Number.isInteger(bins) || bins < 1) throw new Error(`bins must be a positive integer`);
  const pw = opts.panelWidth ?? 300, ph = opts.panelHeight ?? 220;
  const left = 56, right = 16, top = opts.title ? 52 : 30, bottom = 48;
  const width = series.length * (left + pw + right);
  const height = top + ph + bottom;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
  ];
  if (opts.title) {
    out.push(
      `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">` +
        `${escapeXml(opts.title)}</text>`,
    );
  }
  series.forEach((s, k) => {
    const x0 = k * (left + pw + right) + left, y0 = top;
    const counts = histogram(s.cars, bins);
    const max = Math.max(1, ...counts);
    let ticks: number[], yOf: (c: number) => number;
    if (opts.logScale) {
      const decades = Math.max(1, Math.ceil(Math.log10(max)));
      ticks = Array.from({ length: decades + 1 }, (_, i) => 10 ** i);
      yOf = (c) => y0 + ph - (ph * Math.log10(Math.max(1, c))) / decades;
    } else {
      ticks = linearTicks(max);
      const yMax = ticks[ticks.length - 1];
      yOf = (c) => y0 + ph - (ph * c) / yMax;
    }
    out.push(
      `<g>`,
      `<text x="${x0 + pw / 2}" y="${y0 - 10}" text-anchor="middle" font-size="12">` +
        `${escapeXml(s.label)} (n = ${s.cars.length})</text>`,
    );
    // Bars.
    const bw = pw / bins;
    counts.forEach((c, i) => {
      if (c === 0) return;
      const y = yOf(c);
      out.push(
        `<rect x="${fmt(x0 + i * bw + 0.5)}" y="${fmt(y)}" width="${fmt(Math.max(0.5, bw - 1))}" ` +
          `height="${fmt(y0 + ph - y)}" fill="#4878a8"><title>CAR ${fmt((100 * i) / bins)}–${
            fmt((100 * (i + 1)) / bins)
          } %: ${c}</title></rect>`,
      );
    });
    for (const t of opts.thresholds ?? []) {
      const x = x0 + t * pw;
      out.push(
        `<line x1="${fmt(x)}" y1="${y0}" x2="${fmt(x)}" y2="${y0 + ph}" stroke="#c04040" ` +
          `stroke-dasharray="4 3"/>`,
      );
    }
    // Axes, ticks and labels.
    out.push(
      `<line x1="${x0}" y1="${y0 + ph}" x2="${x0 + pw}" y2="${y0 + ph}" stroke="black"/>`,
      `<line x1="${x0}" y1="${y0}" x2="${x0}" y2="${y0 + ph}" stroke="black"/>`,
    );
    for (let p = 0; p <= 100; p += 20) {
      const x = x0 + (p / 100) * pw;
      out.push(
        `<line x1="${fmt(x)}" y1="${y0 + ph}" x2="${fmt(x)}" y2="${y0 + ph + 4}" stroke="black"/>`,
        `<text x="${fmt(x)}" y="${y0 + ph + 16}" text-anchor="middle">${p}</text>`,
      );
    }
    for (const t of ticks) {
      const y = yOf(t);
      out.push(
        `<line x1="${x0 - 4}" y1="${fmt(y)}" x2="${x0}" y2="${fmt(y)}" stroke="black"/>`,
        `<text x="${x0 - 6}" y="${fmt(y + 4)}" text-anchor="end">${t}</text>`,
      );
    }
    out.push(
      `<text x="${x0 + pw / 2}" y="${y0 + ph + 34}" text-anchor="middle">CAR (%)</text>`,
      `<text transform="translate(${x0 - 42} ${y0 + ph / 2}) rotate(-90)" text-anchor="middle">` +
        `Pairs${opts.logScale ? " (log)" : ""}</text>`,
      `</g>`,
    );
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

export async function writeCarHistogram(
  path: string,
  series: readonly CarSeries[],
  opts?: HistogramOptions,
): Promise<void> {
  await Deno.writeTextFile(path, carHistogramSvg(series, opts));
}
