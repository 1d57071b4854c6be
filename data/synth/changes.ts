// The change types of JL1-CD (paper, Fig. 2), painted into both dates and into the label:
// buildings built or demolished, new roads, water bodies that appear, grow or shrink, woodland
// cleared, cropland covered by greenhouses, photovoltaic arrays, and hardened (paved) ground.
// Every event paints date 1 ("before") and date 2 ("after") differently inside its region and
// labels exactly that region; shadows and season stay unlabelled.

import { fbm, quantile } from "./noise.ts";
import { randInt, type Random, uniform } from "../random.ts";
import * as M from "./materials.ts";
import { darken, paint, shifted, type Target } from "./paint.ts";
import {
  blob,
  maskRegion,
  minus,
  polygon,
  randomBlobShape,
  type Region,
  rotatedRect,
  thickLine,
  toMask,
} from "./region.ts";
import type { Scene } from "./scene.ts";

export interface ChangeCanvas {
  s: Scene;
  a: Target;
  b: Target;
  /** 0/1 per frame pixel. */
  label: Uint8Array;
  /** Labelled pixels so far. */
  changed: number;
  /** Names of the events placed, for the dataset summary. */
  events: string[];
}

/** Paint `before` into date 1 (or keep it) and `after` into date 2, and label the region. */
function apply(c: ChangeCanvas, region: Region, before: M.Material | null, after: M.Material) {
  const { s, a, b, label } = c, S = s.size, m = s.margin, W = s.world;
  region.forEach(S, S, (x, y) => {
    const i = y * S + x, k = (y + m) * W + x + m;
    if (before) before(x + m, y + m, k, a.rgb, 3 * i);
    after(x + m, y + m, k, b.rgb, 3 * i);
    if (!label[i]) {
      label[i] = 1;
      c.changed++;
    }
  });
}

/** Paint the same material in both dates where nothing is labelled yet (unchanged content). */
function paintUnchanged(c: ChangeCanvas, region: Region, mat: M.Material) {
  const r = minus(region, c.label, c.s.size);
  paint(c.s, c.a, r, mat);
  paint(c.s, c.b, r, mat);
}

/** A random point of the frame, preferring one not yet changed so events overlap less. */
function freeSpot(c: ChangeCanvas): [number, number] {
  const S = c.s.size, r = c.s.random;
  let x = 0, y = 0;
  for (let i = 0; i < 12; i++) {
    x = uniform(r, 0, S);
    y = uniform(r, 0, S);
    if (!c.label[Math.floor(y) * S + Math.floor(x)]) break;
  }
  return [x, y];
}

/** A group of buildings in a grid, all new or all demolished, about `area` pixels of roof. */
function buildings(c: ChangeCanvas, area: number) {
  const s = c.s, r = s.random, m = s.margin;
  const angle = s.angle + (r() < 0.7 ? 0 : uniform(r, -0.3, 0.3));
  let bw = uniform(r, 7, 26), bh = uniform(r, 6, Math.max(7, Math.min(bw, 18)));
  // A budget smaller than one house gets a smaller house (a shed, at least 5 px across).
  const shrink = Math.min(1, Math.sqrt(area / (bw * bh)));
  bw = Math.max(5, bw * shrink);
  bh = Math.max(5, bh * shrink);
  const gap = uniform(r, 3, 10);
  const k = Math.max(1, Math.round(area / (bw * bh)));
  const cols = Math.max(1, Math.round(Math.sqrt((k * (bh + gap)) / (bw + gap)))),
    rows = Math.ceil(k / cols);
  const [cx, cy] = freeSpot(c);
  const removed = r() < 0.35;
  const ca = Math.cos(angle), sa = Math.sin(angle), [sx, sy] = s.shadow;
  const color = s.palette.roofs[randInt(r, 0, s.palette.roofs.length - 1)];
  const flat = r() < 0.4, height = uniform(r, 2, 8);
  for (let i = 0; i < k; i++) {
    const du = (i % cols - (cols - 1) / 2) * (bw + gap),
      dv = (Math.floor(i / cols) - (rows - 1) / 2) * (bh + gap);
    const x = cx + du * ca - dv * sa, y = cy + du * sa + dv * ca;
    const fp = rotatedRect(x, y, bw * uniform(r, 0.85, 1.1), bh * uniform(r, 0.85, 1.1), angle);
    const roofMat = M.roof(color, x + m, y + m, angle, flat);
    // The shadow falls where the building stands: date 2 for new ones, date 1 for removed ones.
    darken(removed ? c.a : c.b, polygon(shifted(fp, sx * height, sy * height)), 0.55);
    if (removed) apply(c, polygon(fp), roofMat, r() < 0.5 ? M.rubble(s) : M.soil(s));
    else apply(c, polygon(fp), null, roofMat);
  }
  c.events.push(removed ? "building-removed" : "building-new");
}

/** A new road, straight or gently bending, about `area` pixels. */
function road(c: ChangeCanvas, area: number) {
  const s = c.s, r = s.random, S = s.size;
  const width = uniform(r, 4, 11);
  const length = Math.min(Math.max(area / width, 12), 1.6 * S);
  let angle = r() < 0.6 ? s.angle + (r() < 0.5 ? 0 : Math.PI / 2) : uniform(r, 0, Math.PI);
  let [x, y] = freeSpot(c);
  if (length > 0.8 * S) {
    [x, y] = [x - (Math.cos(angle) * length) / 2, y - (Math.sin(angle) * length) / 2];
  }
  const n = Math.min(5, 1 + Math.floor(length / 80)), pts = [x, y];
  for (let i = 0; i < n; i++) {
    x += (Math.cos(angle) * length) / n;
    y += (Math.sin(angle) * length) / n;
    pts.push(x, y);
    angle += uniform(r, -0.25, 0.25);
  }
  const u = r();
  const mat = u < 0.6 ? M.asphalt(s) : u < 0.85 ? M.concrete(s) : M.cleared(s);
  apply(c, thickLine(pts, width), null, mat);
  c.events.push("road-new");
}

/** A pond that appears, or a water body that grows or shrinks by about `area` pixels. */
function waterBody(c: ChangeCanvas, area: number) {
  const s = c.s, r = s.random, [cx, cy] = freeSpot(c), shape = randomBlobShape(r, 0.7);
  const u = r();
  if (u < 0.4) {
    apply(c, polygon(blob(cx, cy, Math.sqrt(area / Math.PI), shape)), null, M.water(s));
    c.events.push("water-new");
    return;
  }
  const f = uniform(r, 0.45, 0.8), R = Math.sqrt(area / (Math.PI * (1 - f * f)));
  const core = polygon(blob(cx, cy, R * f, shape));
  paintUnchanged(c, core, M.water(s));
  const ring = minus(polygon(blob(cx, cy, R, shape)), toMask(core, s.size, s.size), s.size);
  const grows = u < 0.75;
  if (grows) apply(c, ring, null, M.water(s));
  else apply(c, ring, M.water(s), M.mud(s));
  c.events.push(grows ? "water-grow" : "water-shrink");
}

/** A patch of woodland cleared. */
function woodland(c: ChangeCanvas, area: number) {
  const s = c.s, r = s.random, [cx, cy] = freeSpot(c);
  const region = r() < 0.3
    ? polygon(rotatedRect(cx, cy, Math.sqrt(area * 1.5), Math.sqrt(area / 1.5), s.angle))
    : polygon(blob(cx, cy, Math.sqrt(area / Math.PI), randomBlobShape(r, 1)));
  apply(c, region, M.forest(s), M.cleared(s));
  c.events.push("woodland-loss");
}

function rectOfArea(c: ChangeCanvas, area: number, maxAspect: number): Region {
  const s = c.s, r = s.random;
  const [cx, cy] = freeSpot(c), aspect = uniform(r, 1, maxAspect);
  const angle = s.angle + (r() < 0.5 ? 0 : Math.PI / 2);
  return polygon(rotatedRect(cx, cy, Math.sqrt(area * aspect), Math.sqrt(area / aspect), angle));
}

function randomCrop(s: Scene, r: Random): M.Material {
  const p = s.palette.crop;
  return M.crop(s, p[randInt(r, 0, p.length - 1)], s.angle, uniform(r, 3, 7));
}

/** Cropland covered by a block of greenhouses. */
function greenhouses(c: ChangeCanvas, area: number) {
  const s = c.s, r = s.random;
  const mat = M.greenhouse(s, s.angle + (r() < 0.5 ? 0 : Math.PI / 2), uniform(r, 6, 11));
  apply(c, rectOfArea(c, area, 2.5), randomCrop(s, r), mat);
  c.events.push("greenhouse");
}

/** A photovoltaic array on open ground. */
function photovoltaic(c: ChangeCanvas, area: number) {
  const s = c.s, r = s.random;
  const ground = r() < 0.5 ? M.soil(s) : M.grass(s);
  apply(c, rectOfArea(c, area, 3), null, M.photovoltaic(s.angle, uniform(r, 6, 10), ground));
  c.events.push("photovoltaic");
}

/** Ground paved or built over (a yard, a square, a factory floor). */
function hardened(c: ChangeCanvas, area: number) {
  const s = c.s, r = s.random, [cx, cy] = freeSpot(c);
  const region = r() < 0.5
    ? rectOfArea(c, area, 2)
    : polygon(blob(cx, cy, Math.sqrt(area / Math.PI), randomBlobShape(r, 0.35), 8));
  apply(c, region, null, M.concrete(s));
  c.events.push("hardened");
}

/** Frame mask of rectangles aligned with the scene, added until they cover `fraction`. */
function rectangleCover(c: ChangeCanvas, fraction: number): Uint8Array {
  const s = c.s, r = s.random, S = s.size, mask = new Uint8Array(S * S), want = fraction * S * S;
  let covered = 0;
  for (let i = 0; i < 40 && covered < 0.95 * want; i++) {
    const area = (want - covered) * uniform(r, 0.5, 1.1), aspect = uniform(r, 1, 2.5);
    let x = 0, y = 0;
    for (let k = 0; k < 12; k++) {
      x = uniform(r, 0, S);
      y = uniform(r, 0, S);
      if (!mask[Math.floor(y) * S + Math.floor(x)]) break;
    }
    const rect = rotatedRect(x, y, Math.sqrt(area * aspect), Math.sqrt(area / aspect), s.angle);
    polygon(rect).forEach(S, S, (px, py) => {
      const k = py * S + px;
      if (!mask[k]) {
        mask[k] = 1;
        covered++;
      }
    });
  }
  return mask;
}

/**
 * A large change covering about `area` pixels: organic patches (smooth noise below a quantile)
 * or aligned rectangles (arrays, greenhouse farms, paved yards): land cleared, flooded, paved or
 * built over.
 */
function largeRegion(c: ChangeCanvas, area: number) {
  const s = c.s, r = s.random, S = s.size, f = Math.min(1, area / (S * S));
  const kind = ["woodland", "water", "hardened", "photovoltaic", "greenhouse"][randInt(r, 0, 4)];
  const blocky = kind === "photovoltaic" || kind === "greenhouse" ||
    (kind === "hardened" && r() < 0.5);
  let mask: Uint8Array;
  if (f >= 0.97) {
    mask = new Uint8Array(S * S).fill(1); // the whole scene changed
  } else if (blocky) {
    mask = rectangleCover(c, f);
  } else {
    const field = fbm(S, S, S / uniform(r, 1.5, 4), 3, r), t = quantile(field, f);
    mask = new Uint8Array(S * S);
    for (let i = 0; i < mask.length; i++) mask[i] = field[i] < t ? 1 : 0;
  }
  const region = maskRegion(mask, S);
  switch (kind) {
    case "woodland":
      apply(c, region, M.forest(s), M.cleared(s));
      break;
    case "water":
      if (r() < 0.6) apply(c, region, null, M.water(s));
      else apply(c, region, M.water(s), M.mud(s));
      break;
    case "hardened":
      apply(c, region, null, M.concrete(s));
      break;
    case "photovoltaic":
      apply(c, region, null, M.photovoltaic(s.angle, uniform(r, 6, 10), M.soil(s)));
      break;
    default:
      apply(c, region, randomCrop(s, r), M.greenhouse(s, s.angle, uniform(r, 6, 11)));
  }
  c.events.push(`${kind}-large`);
}

type Event = (c: ChangeCanvas, area: number) => void;

function pick(r: Random, items: [Event, number][]): Event {
  let u = r() * items.reduce((a, [, w]) => a + w, 0);
  for (const [e, w] of items) if ((u -= w) < 0) return e;
  return items[items.length - 1][0];
}

/** Which kinds of change fit a pixel budget: small budgets get small objects. */
function chooseEvent(r: Random, budget: number, total: number): Event {
  if (budget >= 0.08 * total) return pick(r, [[largeRegion, 0.8], [buildings, 0.2]]);
  if (budget >= 600) {
    return pick(r, [
      [buildings, 0.3],
      [road, 0.14],
      [waterBody, 0.12],
      [woodland, 0.12],
      [greenhouses, 0.1],
      [photovoltaic, 0.12],
      [hardened, 0.1],
    ]);
  }
  return pick(r, [[buildings, 0.55], [hardened, 0.2], [road, 0.15], [photovoltaic, 0.05], [
    waterBody,
    0.05,
  ]]);
}

/** Place change events until the labelled share of the frame approaches `targetCar`. */
export function placeChanges(c: ChangeCanvas, targetCar: number): void {
  const r = c.s.random, total = c.s.size * c.s.size, target = Math.round(targetCar * total);
  if (targetCar === 0) return;
  const tolerance = Math.max(6, 0.04 * target);
  // At least one event: a tiny target on a small image still gets its (smallest) object.
  for (let i = 0; i < 80 && (c.changed === 0 || c.changed < target - tolerance); i++) {
    const remaining = target - c.changed;
    // Big first events and several smaller ones, so large changes mix types as real scenes do.
    if (i === 0 && targetCar >= 0.97) {
      largeRegion(c, remaining); // the whole scene changed
      continue;
    }
    const budget = remaining < 800 ? remaining : remaining * uniform(r, i === 0 ? 0.7 : 0.4, 1);
    chooseEvent(r, budget, total)(c, budget);
  }
}
