"""Plain-PyTorch versions of Open-CD's BIT-R18, "ChangeFormer" MiT-b0 (a Siamese SegFormer-b0) and
ChangerEx MiT-b0, for timing beside the engine on the GPU machine (which has no mmseg/mmcv/open-cd).
Written for this project from ../shared/fixtures/README.md ("Open-CD transformer detectors") and a
reading of the upstream code; module names are chosen so that state_dict() keys equal upstream's
(and the fixture files'), so load_state_dict(strict=True) of fixtures/weights/*_seed0 works.
forward(x1, x2) returns logits [B, 2, H, W] at input resolution.
Self-check of the parameter counts: python3 bench/reference/opencd_models.py --count"""
import os
import sys
import torch
import torch.nn as nn
import torch.nn.functional as F

# Upstream (mmseg's EfficientMultiheadAttention) calls nn.MultiheadAttention with need_weights
# left True, the slower explicit-softmax path. OPENCD_SDPA=1 asks for the fused kernel instead.
NEED_WEIGHTS = os.environ.get("OPENCD_SDPA") != "1"


def resize(x, size):
    """mmseg `resize` as used here: bilinear, align_corners False, size-based."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class Up(nn.Module):
    """mmseg Upsample(scale_factor): out = int(in * factor), then resize (no parameters)."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return resize(x, [int(t * self.factor) for t in x.shape[-2:]])


class ConvModule(nn.Module):
    """mmcv ConvModule: conv (bias only without norm), optional BN (eps 1e-5), ReLU."""

    def __init__(self, cin, cout, k, padding=0, bn=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=padding, bias=not bn)
        if bn:
            self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        x = self.conv(x)
        return F.relu(self.bn(x) if hasattr(self, "bn") else x)


class DropPath(nn.Module):
    """Stochastic depth per sample (mmcv DropPath): identity in eval or at p = 0."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if self.p == 0 or not self.training:
            return x
        keep = 1 - self.p
        mask = (keep + torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)).floor()
        return x / keep * mask


# ---- ResNetV1c-18, 3 stages, strides (1, 2, 1) (mmseg), BIT's backbone ------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (self.downsample(x) if hasattr(self, "downsample") else x))


class ResNetV1c18(nn.Module):
    def __init__(self):
        super().__init__()
        conv = lambda i, o, s: nn.Conv2d(i, o, 3, s, 1, bias=False)  # noqa: E731
        self.stem = nn.Sequential(conv(3, 32, 2), nn.BatchNorm2d(32), nn.ReLU(), conv(32, 32, 1), nn.BatchNorm2d(32),
                                  nn.ReLU(), conv(32, 64, 1), nn.BatchNorm2d(64), nn.ReLU())
        self.layer1 = nn.Sequential(BasicBlock(64, 64, 1), BasicBlock(64, 64, 1))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128, 1))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 1), BasicBlock(256, 256, 1))

    def forward(self, x):
        x = F.max_pool2d(self.stem(x), 3, 2, 1)
        return self.layer3(self.layer2(self.layer1(x)))


# ---- BITHead (Open-CD) -----------------------------------------------------------------------
class CrossAttention(nn.Module):
    """8 heads of 8 from 32-wide inputs; the scale is 32^-0.5 (input width), as upstream."""

    def __init__(self, dim=32, inner=64, heads=8):
        super().__init__()
        self.heads, self.scale = heads, dim ** -0.5
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.fc_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x, ref):
        b, n, m, h = x.shape[0], x.shape[1], ref.shape[1], self.heads
        q = self.to_q(x).reshape(b, n, h, -1).transpose(1, 2)
        k = self.to_k(ref).reshape(b, m, h, -1).transpose(1, 2)
        v = self.to_v(ref).reshape(b, m, h, -1).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) * self.scale, -1)
        return self.fc_out((a @ v).transpose(1, 2).flatten(2))


def _ff(dim=32, hidden=64):
    # indices 0 and 3 hold the weights, as upstream's FeedForward (drop rate 0 in the config)
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(0.0), nn.Linear(hidden, dim), nn.Dropout(0.0))


class BITBlock(nn.Module):
    """Pre-norm transformer block; the decoder variant normalises the tokens with norm1_."""

    def __init__(self, decoder):
        super().__init__()
        self.attn, self.ff = CrossAttention(), _ff()
        self.norm1 = nn.LayerNorm(32)
        if decoder:
            self.norm1_ = nn.LayerNorm(32)
        self.norm2 = nn.LayerNorm(32)

    def forward(self, x, ref=None):
        n = self.norm1(x)
        x = self.attn(n, n if ref is None else self.norm1_(ref)) + x
        return self.ff(self.norm2(x)) + x


class BITHead(nn.Module):
    def __init__(self, cin=256, ch=32, tokens=4, dec_depth=8):
        super().__init__()
        self.pre_process = nn.Sequential(Up(2), ConvModule(cin, ch, 3, padding=1, bn=False))
        self.conv_att = ConvModule(ch, tokens, 1, bn=False)
        self.enc_pos_embedding = nn.Parameter(torch.randn(1, 2 * tokens, ch))
        self.encoder = nn.ModuleList([BITBlock(False)])
        self.decoder = nn.ModuleList([BITBlock(True) for _ in range(dec_depth)])
        self.upsample = Up(4)
        self.dropout = nn.Dropout2d(0.1)  # BaseDecodeHead's default dropout_ratio
        self.conv_seg = nn.Conv2d(ch, 2, 1)

    def _tokens(self, x):
        att = torch.softmax(self.conv_att(x).flatten(2), -1)  # [B, L, HW]
        return att @ x.flatten(2).transpose(1, 2)  # [B, L, C]

    def forward(self, feat):
        x1, x2 = (self.pre_process(t) for t in torch.chunk(feat, 2, 1))
        tok = torch.cat([self._tokens(x1), self._tokens(x2)], 1) + self.enc_pos_embedding
        for blk in self.encoder:
            tok = blk(tok)
        t1, t2 = torch.chunk(tok, 2, 1)
        b, c, h, w = x1.shape
        # upstream permutes NCHW <-> tokens around every decoder block; once is the same math
        x1, x2 = x1.flatten(2).transpose(1, 2), x2.flatten(2).transpose(1, 2)
        for blk in self.decoder:
            x1, x2 = blk(x1, t1), blk(x2, t2)
        y = torch.abs(x1 - x2).transpose(1, 2).reshape(b, c, h, w)
        return self.conv_seg(self.dropout(self.upsample(y)))


class BIT(nn.Module):
    """SiamEncoderDecoder: backbone on A, then on B (separate BN batches), concat neck, BITHead."""

    def __init__(self):
        super().__init__()
        self.backbone, self.decode_head = ResNetV1c18(), BITHead()

    def forward(self, x1, x2):
        out = self.decode_head(torch.cat([self.backbone(x1), self.backbone(x2)], 1))
        return out if out.shape[-2:] == x1.shape[-2:] else resize(out, x1.shape[-2:])


# ---- MixVisionTransformer-b0 (mmseg) ---------------------------------------------------------
class PatchEmbed(nn.Module):
    def __init__(self, cin, dim, k, stride):
        super().__init__()
        self.projection = nn.Conv2d(cin, dim, k, stride, k // 2)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        x = self.projection(x)
        return self.norm(x.flatten(2).transpose(1, 2)), x.shape[-2:]


def _nchw(x, hw):
    return x.transpose(1, 2).reshape(x.shape[0], -1, hw[0], hw[1])


class EfficientAttention(nn.Module):
    """Keys/values from an sr x sr strided conv + LN (sr > 1); torch MultiheadAttention."""

    def __init__(self, dim, heads, sr, drop_path):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.sr_ratio = sr
        if sr > 1:
            self.sr = nn.Conv2d(dim, dim, sr, sr)
            self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.proj_drop = nn.Dropout(0.0)
        self.drop_path = DropPath(drop_path)

    def forward(self, x, hw, identity):
        kv = self.norm(self.sr(_nchw(x, hw)).flatten(2).transpose(1, 2)) if self.sr_ratio > 1 else x
        out = self.attn(x, kv, kv, need_weights=NEED_WEIGHTS)[0]
        return identity + self.drop_path(self.proj_drop(out))


class MixFFN(nn.Module):
    """1x1 conv, 3x3 depthwise, GELU, 1x1 conv (indices 0, 1, 4 hold weights); NCHW in and out."""

    def __init__(self, dim, hidden, drop_path=0.0):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden),
                                    nn.GELU(), nn.Dropout(0.0), nn.Conv2d(hidden, dim, 1), nn.Dropout(0.0))
        self.drop_path = DropPath(drop_path)

    def forward(self, x, identity):
        return identity + self.drop_path(self.layers(x))


class MiTBlock(nn.Module):
    def __init__(self, dim, heads, sr, drop_path):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = EfficientAttention(dim, heads, sr, drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = MixFFN(dim, 4 * dim, drop_path)

    def forward(self, x, hw):
        x = self.attn(self.norm1(x), hw, identity=x)
        y = self.ffn(_nchw(self.norm2(x), hw), identity=_nchw(x, hw))
        return y.flatten(2).transpose(1, 2)


class MiT(nn.Module):
    """MiT-b0: dims 32/64/160/256, heads 1/2/5/8, 2 blocks a stage, drop-path linspace(0, 0.1, 8)."""

    def __init__(self, dims=(32, 64, 160, 256), heads=(1, 2, 5, 8), depth=2, drop_path_rate=0.1):
        super().__init__()
        dpr = torch.linspace(0, drop_path_rate, depth * len(dims)).tolist()
        self.layers, cin = nn.ModuleList(), 3
        for i, (d, h, k, s, sr) in enumerate(zip(dims, heads, (7, 3, 3, 3), (4, 2, 2, 2), (8, 4, 2, 1))):
            blocks = nn.ModuleList([MiTBlock(d, h, sr, dpr[depth * i + j]) for j in range(depth)])
            self.layers.append(nn.ModuleList([PatchEmbed(cin, d, k, s), blocks, nn.LayerNorm(d, eps=1e-6)]))
            cin = d

    def stage(self, i, x):
        embed, blocks, norm = self.layers[i]
        x, hw = embed(x)
        for blk in blocks:
            x = blk(x, hw)
        return _nchw(norm(x), hw)

    def forward(self, x):
        outs = []
        for i in range(len(self.layers)):
            x = self.stage(i, x)
            outs.append(x)
        return outs


class SegformerHead(nn.Module):
    def __init__(self, cins=(64, 128, 320, 512), ch=256):
        super().__init__()
        self.convs = nn.ModuleList([ConvModule(c, ch, 1) for c in cins])
        self.fusion_conv = ConvModule(ch * len(cins), ch, 1)
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(ch, 2, 1)

    def forward(self, feats):
        size = feats[0].shape[-2:]
        outs = [resize(conv(f), size) for conv, f in zip(self.convs, feats)]
        return self.conv_seg(self.dropout(self.fusion_conv(torch.cat(outs, 1))))


class ChangeFormer(nn.Module):
    """Open-CD's "ChangeFormer": SiamEncoderDecoder + MiT-b0 + concat neck + SegformerHead."""

    def __init__(self):
        super().__init__()
        self.backbone, self.decode_head = MiT(), SegformerHead()

    def forward(self, x1, x2):
        feats = [torch.cat(p, 1) for p in zip(self.backbone(x1), self.backbone(x2))]
        return resize(self.decode_head(feats), x1.shape[-2:])


# ---- ChangerEx MiT-b0 (Open-CD): IA_MixVisionTransformer + Changer head -----------------------
def spatial_exchange(x1, x2):
    """Swap every column w with w % 2 == 0 between the dates."""
    m = (torch.arange(x1.shape[-1], device=x1.device) % 2 == 0).view(1, 1, 1, -1)
    return torch.where(m, x2, x1), torch.where(m, x1, x2)


def channel_exchange(x1, x2):
    """Swap every channel c with c % 2 == 0 between the dates."""
    m = (torch.arange(x1.shape[1], device=x1.device) % 2 == 0).view(1, -1, 1, 1)
    return torch.where(m, x2, x1), torch.where(m, x1, x2)


class FDAF(nn.Module):
    """Flow dual-alignment fusion: a 4-channel flow from both dates warps each onto the other."""

    def __init__(self, c=64):
        super().__init__()
        self.flow_make = nn.Sequential(nn.Conv2d(2 * c, 2 * c, 5, 1, 2, groups=2 * c), nn.InstanceNorm2d(2 * c),
                                       nn.GELU(), nn.Conv2d(2 * c, 4, 1, bias=False))

    @staticmethod
    def warp(x, flow):
        n, _, h, w = x.shape
        gy, gx = torch.meshgrid(torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype),
                                torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype), indexing="ij")
        # offsets are divided by W and H (not (W-1)/2), as upstream
        norm = torch.tensor([w, h], device=x.device, dtype=x.dtype)
        grid = torch.stack([gx, gy], -1).unsqueeze(0) + flow.permute(0, 2, 3, 1) / norm
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

    def forward(self, x1, x2):
        f1, f2 = torch.chunk(self.flow_make(torch.cat([x1, x2], 1)), 2, 1)
        return torch.cat([self.warp(x1, f1) - x2, self.warp(x2, f2) - x1], 1)


class ChangerHead(nn.Module):
    def __init__(self, cins=(32, 64, 160, 256), ch=128):
        super().__init__()
        self.convs = nn.ModuleList([ConvModule(c, ch, 1) for c in cins])
        self.fusion_conv = ConvModule(ch * len(cins), ch // 2, 1)
        self.neck_layer = FDAF(ch // 2)
        self.discriminator = MixFFN(ch, ch)  # its DropPath(0) is an identity
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(ch, 2, 1)

    def base_forward(self, feats):
        size = feats[0].shape[-2:]
        return self.fusion_conv(torch.cat([resize(conv(f), size) for conv, f in zip(self.convs, feats)], 1))

    def forward(self, feats):
        halves = [torch.chunk(f, 2, 1) for f in feats]
        # base_forward runs per date, as upstream (separate BN batches in training)
        out = self.neck_layer(self.base_forward([h[0] for h in halves]), self.base_forward([h[1] for h in halves]))
        out = self.discriminator(out, identity=out)
        return self.conv_seg(self.dropout(out))


class ChangerEx(nn.Module):
    """DIEncoderDecoder: both dates stage by stage with shared MiT weights; after stage i the
    interaction (none, spatial, channel, channel) feeds both the head and the next stage."""

    def __init__(self):
        super().__init__()
        self.backbone, self.decode_head = MiT(), ChangerHead()
        self.exchange = [None, spatial_exchange, channel_exchange, channel_exchange]

    def forward(self, x1, x2):
        size, feats = x1.shape[-2:], []
        for i, ex in enumerate(self.exchange):
            x1, x2 = self.backbone.stage(i, x1), self.backbone.stage(i, x2)
            if ex is not None:
                x1, x2 = ex(x1, x2)
            feats.append(torch.cat([x1, x2], 1))
        return resize(self.decode_head(feats), size)


# ---- losses as the configs train them --------------------------------------------------------
def ce_loss(logits, label, ignore=255):
    """Softmax CE averaged over the valid (non-ignored) pixels, as the engine's cd_loss. mmseg's
    CrossEntropyLoss (avg_non_ignore False) divides by all B*H*W pixels instead: the same value
    when no pixel is ignored (as here and in the fixtures), smaller when a rotation left some."""
    return F.cross_entropy(logits, label, ignore_index=ignore)


def ohem_ce_loss(logits, label, thresh=0.7, min_kept=100000, ignore=255):
    """mmseg OHEMPixelSampler + CE: p = softmax[true class]; threshold = max(thresh, sorted valid
    p at index min(min_kept * B, n_valid - 1)); weight 1 where p < threshold; CE * weight, mean
    over all B*H*W pixels. Done with tensors only (no host sync) but the same arithmetic."""
    with torch.no_grad():
        valid = label != ignore
        p = torch.softmax(logits, 1).gather(1, torch.where(valid, label, 0).unsqueeze(1)).squeeze(1)
        # ignored pixels sort last (+inf), so the first n_valid sorted values are upstream's
        sorted_p = torch.where(valid, p, torch.inf).flatten().sort().values
        idx = torch.clamp(valid.sum() - 1, max=min_kept * label.shape[0]).clamp(min=0)
        threshold = torch.clamp(sorted_p[idx], min=thresh)
        weight = (valid & (p < threshold)).to(logits.dtype)
    return (F.cross_entropy(logits, label, ignore_index=ignore, reduction="none") * weight).mean()


MODELS = {"bit_r18": (BIT, ce_loss, 2989638), "changeformer_mit_b0": (ChangeFormer, ce_loss, 3846754),
          "changer_ex_mit_b0": (ChangerEx, ohem_ce_loss, 3457250)}
# recipe optimizers (AdamW): lr, weight decay of the cgwx configs
OPTIM = {"bit_r18": (1e-3, 0.05), "changeformer_mit_b0": (6e-5, 0.01), "changer_ex_mit_b0": (1e-4, 0.01)}


def build(name):
    return MODELS[name][0]()


# ---- from-scratch initialisation as Open-CD's init_weights leaves it -------------------------
def _normal(t, std):
    with torch.no_grad():
        t.normal_(0.0, std)


def _zero(t):
    if t is not None:
        with torch.no_grad():
            t.zero_()


def _kaiming_fan_out(conv):
    """kaiming_normal_(fan_out, relu): N(0, 2 / (out channels * kernel area)), groups not
    divided out (PyTorch's fan_out); bias 0 (mmcv ConvModule / mmseg ResNet)."""
    co, _, kh, kw = conv.weight.shape
    _normal(conv.weight, (2.0 / (co * kh * kw)) ** 0.5)
    _zero(conv.bias)


def _mit_init(mit):
    """mmseg MixVisionTransformer.init_weights (init_cfg None): Linear trunc_normal(0.02) on
    [-2, 2] with bias 0 (MultiheadAttention's out_proj included; its packed in_proj keeps
    PyTorch's xavier_uniform and zero bias), Conv2d N(0, 2 / (k*k*out / groups)) with bias 0,
    LayerNorm 1 / 0."""
    for m in mit.modules():
        if isinstance(m, nn.Linear):
            with torch.no_grad():
                nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
            _zero(m.bias)
        elif isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            _normal(m.weight, (2.0 / (kh * kw * m.out_channels / m.groups)) ** 0.5)
            _zero(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def opencd_init(model):
    """The seeded from-scratch initialisation the engine's create(seed) draws for these models
    (models/{resnet,bit,mit,segformer_head,changer}.ts), i.e. what Open-CD's init_weights leaves:
    the same rule per tensor, other random draws. PyTorch's construction defaults (conv and
    Linear U(+-1/sqrt(fan_in)), BN and LN 1 / 0, randn position embedding) stand elsewhere.
    - BIT: every ResNetV1c conv kaiming fan_out, BN 1 / 0, each block's bn2 weight 0
      (zero_init_residual); the head's ConvModules (pre_process, conv_att) kaiming fan_out with
      bias 0; conv_seg N(0, 0.01) with bias 0; its transformer Linears and LNs keep the defaults.
    - ChangeFormer: MiT as mmseg; SegformerHead ConvModules kaiming fan_out; conv_seg N(0, 0.01).
    - ChangerEx: MiT as mmseg; Changer head: conv_seg N(0, 0.01), fusion_conv kaiming fan_out;
      `convs` (a plain ModuleList mmengine does not descend into), FDAF and the discriminator
      keep PyTorch's defaults."""
    head = model.decode_head
    if isinstance(model, BIT):
        for m in model.backbone.modules():
            if isinstance(m, nn.Conv2d):
                _kaiming_fan_out(m)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in model.backbone.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
        _kaiming_fan_out(head.pre_process[1].conv)
        _kaiming_fan_out(head.conv_att.conv)
    elif isinstance(model, (ChangeFormer, ChangerEx)):
        _mit_init(model.backbone)
        convs = [head.fusion_conv] + (list(head.convs) if isinstance(model, ChangeFormer) else [])
        for cm in convs:
            _kaiming_fan_out(cm.conv)
    else:
        raise ValueError(f"opencd_init: not an Open-CD model: {type(model).__name__}")
    _normal(head.conv_seg.weight, 0.01)
    _zero(head.conv_seg.bias)
    return model


def loss_fn(name):
    return MODELS[name][1]


if __name__ == "__main__" and "--count" in sys.argv:
    bad = 0
    for name, (cls, _, want) in MODELS.items():
        n = sum(p.numel() for p in cls().parameters())
        bad += n != want
        print(f"{name}: {n:,} parameters (Open-CD: {want:,}){'' if n == want else '  MISMATCH'}")
    sys.exit(1 if bad else 0)
