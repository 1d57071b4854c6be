// Per-channel input normalisation, (x − mean) / std after scaling to [0, 1]: the shape the model
// registry records per model, the sample loader (data/) and the GPU augmentation apply. It lives
// here, below both models/ and data/, so neither has to import the other.

export interface Normalize {
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

/** ImageNet statistics, the usual choice for pretrained backbones. */
export const IMAGENET: Normalize = {
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
};
