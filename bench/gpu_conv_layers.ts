// The layers bench/gpu_conv.ts times: every distinct convolution shape of TinyCD, FC-Siam-diff
// and SNUNet's up-convs at batch 8, 512² input (`--small`: batch 1 and sides ÷ 16, a smoke run
// on the software adapter; `--only SUBSTRING` keeps the layers whose key contains it).

const args = Deno.args;
const arg = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
export const SMALL = args.includes("--small");
const ONLY = arg("--only");

export interface Layer {
  key: string;
  what: string;
  transposed: boolean;
  x: number[];
  w: number[];
  stride: number;
  padding: number;
  outputPadding: number;
  groups: number;
}

export const B = SMALL ? 1 : 8;
const S = (px: number) => (SMALL ? px / 16 : px);

function conv(
  key: string,
  what: string,
  ci: number,
  co: number,
  k: number,
  px: number,
  o: { stride?: number; groups?: number } = {},
): Layer {
  const groups = o.groups ?? 1;
  return {
    key,
    what,
    transposed: false,
    x: [B, ci, S(px), S(px)],
    w: [co, ci / groups, k, k],
    stride: o.stride ?? 1,
    padding: (k - 1) >> 1,
    outputPadding: 0,
    groups,
  };
}

function convT(
  key: string,
  what: string,
  ci: number,
  co: number,
  k: number,
  px: number,
  stride: number,
): Layer {
  const [padding, outputPadding] = k === 3 ? [1, stride - 1] : [0, 0];
  return {
    key,
    what,
    transposed: true,
    x: [B, ci, S(px), S(px)],
    w: [ci, co, k, k],
    stride,
    padding,
    outputPadding,
    groups: 1,
  };
}

// Distinct layer shapes (px = input size of the layer). TinyCD: EfficientNet-b4 features[0..3]
// (stem, MBConv expand / depthwise / project), the mixing convs (groups = Co on interleaved
// pairs), the up-blocks and the classifier. FC-Siam-diff: encoder 3×3 convs, decoder transposed
// convs (k3 s2 p1 op1 upsampling, k3 s1 p1). SNUNet: the k2 s2 up-convs.
export const LAYERS: Layer[] = [
  conv("tcd_stem", "TinyCD stem 3→48 k3 s2 @512", 3, 48, 3, 512, { stride: 2 }),
  conv("tcd_dw48", "TinyCD dw 48 k3 @256", 48, 48, 3, 256, { groups: 48 }),
  conv("tcd_pw48_24", "TinyCD 1×1 48→24 @256", 48, 24, 1, 256),
  conv("tcd_dw24", "TinyCD dw 24 k3 @256", 24, 24, 3, 256, { groups: 24 }),
  conv("tcd_pw24_24", "TinyCD 1×1 24→24 @256", 24, 24, 1, 256),
  conv("tcd_pw24_144", "TinyCD 1×1 24→144 @256", 24, 144, 1, 256),
  conv("tcd_dw144s2", "TinyCD dw 144 k3 s2 @256", 144, 144, 3, 256, { groups: 144, stride: 2 }),
  conv("tcd_pw144_32", "TinyCD 1×1 144→32 @128", 144, 32, 1, 128),
  conv("tcd_pw32_192", "TinyCD 1×1 32→192 @128", 32, 192, 1, 128),
  conv("tcd_dw192", "TinyCD dw 192 k3 @128", 192, 192, 3, 128, { groups: 192 }),
  conv("tcd_pw192_32", "TinyCD 1×1 192→32 @128", 192, 32, 1, 128),
  conv("tcd_dw192k5s2", "TinyCD dw 192 k5 s2 @128", 192, 192, 5, 128, { groups: 192, stride: 2 }),
  conv("tcd_pw192_56", "TinyCD 1×1 192→56 @64", 192, 56, 1, 64),
  conv("tcd_pw56_336", "TinyCD 1×1 56→336 @64", 56, 336, 1, 64),
  conv("tcd_dw336k5", "TinyCD dw 336 k5 @64", 336, 336, 5, 64, { groups: 336 }),
  conv("tcd_pw336_56", "TinyCD 1×1 336→56 @64", 336, 56, 1, 64),
  conv("tcd_mix3", "TinyCD mix 6→3 g3 k3 @512", 6, 3, 3, 512, { groups: 3 }),
  conv("tcd_mix24", "TinyCD mix 48→24 g24 k3 @256", 48, 24, 3, 256, { groups: 24 }),
  conv("tcd_mix32", "TinyCD mix 64→32 g32 k3 @128", 64, 32, 3, 128, { groups: 32 }),
  conv("tcd_mix56", "TinyCD mix 112→56 g56 k3 @64", 112, 56, 3, 64, { groups: 56 }),
  conv("tcd_lin3_10", "TinyCD 1×1 3→10 @512", 3, 10, 1, 512),
  conv("tcd_dw56", "TinyCD up dw 56 k3 @128", 56, 56, 3, 128, { groups: 56 }),
  conv("tcd_pw56_64", "TinyCD up 1×1 56→64 @128", 56, 64, 1, 128),
  conv("tcd_dw64_256", "TinyCD up dw 64 k3 @256", 64, 64, 3, 256, { groups: 64 }),
  conv("tcd_pw64_64", "TinyCD up 1×1 64→64 @256", 64, 64, 1, 256),
  conv("tcd_dw64_512", "TinyCD up dw 64 k3 @512", 64, 64, 3, 512, { groups: 64 }),
  conv("tcd_pw64_32", "TinyCD up 1×1 64→32 @512", 64, 32, 1, 512),
  conv("tcd_cls32_16", "TinyCD classify 1×1 32→16 @512", 32, 16, 1, 512),
  conv("tcd_cls16_8", "TinyCD classify 1×1 16→8 @512", 16, 8, 1, 512),
  conv("tcd_cls8_1", "TinyCD classify 1×1 8→1 @512", 8, 1, 1, 512),
  conv("fcs_c3_16", "FC-Siam 3→16 k3 @512", 3, 16, 3, 512),
  conv("fcs_c16_16", "FC-Siam 16→16 k3 @512", 16, 16, 3, 512),
  conv("fcs_c16_32", "FC-Siam 16→32 k3 @256", 16, 32, 3, 256),
  conv("fcs_c32_32", "FC-Siam 32→32 k3 @256", 32, 32, 3, 256),
  conv("fcs_c32_64", "FC-Siam 32→64 k3 @128", 32, 64, 3, 128),
  conv("fcs_c64_64", "FC-Siam 64→64 k3 @128", 64, 64, 3, 128),
  conv("fcs_c64_128", "FC-Siam 64→128 k3 @64", 64, 128, 3, 64),
  conv("fcs_c128_128", "FC-Siam 128→128 k3 @64", 128, 128, 3, 64),
  convT("fcs_up128", "FC-Siam upT 128→128 k3 s2 @32", 128, 128, 3, 32, 2),
  convT("fcs_up64", "FC-Siam upT 64→64 k3 s2 @64", 64, 64, 3, 64, 2),
  convT("fcs_up32", "FC-Siam upT 32→32 k3 s2 @128", 32, 32, 3, 128, 2),
  convT("fcs_up16", "FC-Siam upT 16→16 k3 s2 @256", 16, 16, 3, 256, 2),
  convT("fcs_d256_128", "FC-Siam convT 256→128 k3 @64", 256, 128, 3, 64, 1),
  convT("fcs_d128_64", "FC-Siam convT 128→64 k3 @128", 128, 64, 3, 128, 1),
  convT("fcs_d64_32", "FC-Siam convT 64→32 k3 @256", 64, 32, 3, 256, 1),
  convT("fcs_d32_16", "FC-Siam convT 32→16 k3 @512", 32, 16, 3, 512, 1),
  convT("fcs_d16_2", "FC-Siam convT 16→2 k3 @512", 16, 2, 3, 512, 1),
  convT("snu_up32", "SNUNet upT 32→32 k2 s2 @128", 32, 32, 2, 128, 2),
  convT("snu_up256", "SNUNet upT 256→256 k2 s2 @16", 256, 256, 2, 16, 2),
].filter((l) => !ONLY || l.key.includes(ONLY));
