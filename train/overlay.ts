// Error overlays as in the JL1-CD paper's figures: the time-2 image with the prediction's
// mistakes painted over it, so missed and false changes stand out against the scene.

import type { RgbImage } from "../data/png.ts";

/** Colours of the overlay: label 1 & prediction 0 (missed), label 0 & prediction 1 (false
 * alarm), both 1 (found). Pixels where both say unchanged keep the image. */
export const OVERLAY_COLOURS = {
  missed: [255, 0, 0],
  falseAlarm: [0, 0, 255],
  found: [255, 255, 255],
} as const;

/** `image` with each pixel coloured by (label, prediction); both are 0/1 per pixel, H·W long. */
export function errorOverlay(
  image: RgbImage,
  label: ArrayLike<number>,
  prediction: ArrayLike<number>,
): RgbImage {
  const n = image.width * image.height;
  if (label.length !== n || prediction.length !== n) {
    throw new Error(
      `overlay: label (${label.length}) and prediction (${prediction.length}) must have ` +
        `${image.width}×${image.height} = ${n} pixels`,
    );
  }
  const data = Uint8Array.from(image.data);
  for (let i = 0; i < n; i++) {
    const truth = label[i] === 1, said = prediction[i] === 1;
    if (!truth && !said) continue;
    const colour = truth && said
      ? OVERLAY_COLOURS.found
      : truth
      ? OVERLAY_COLOURS.missed
      : OVERLAY_COLOURS.falseAlarm;
    data[3 * i] = colour[0];
    data[3 * i + 1] = colour[1];
    data[3 * i + 2] = colour[2];
  }
  return { width: image.width, height: image.height, data };
}
