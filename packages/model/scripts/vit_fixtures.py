"""Golden fixtures for the ViT + SsVP image encoder, from an independent plain-torch implementation.

Three tiny vision transformers (width 32, depth 3, 4 heads, patch 8, image 32) written after the
upstream modules with their parameter names: Hugging Face ViTModel, timm's VisionTransformer and
Hugging Face CLIP's vision tower (QuickGELU, pre-LayerNorm, plus visual_projection). Each gets
random float32 weights, saved in its upstream naming as a checkpoint would hold them
(fixtures/vit_<family>.safetensors), and a golden file (fixtures/vit_<family>.golden.safetensors)
with the input images, the CLS embedding E_V, the SsVP ids and the gradient of
loss = sum(E_V * R) for every parameter under the TypeScript model's (timm) names. The reference
runs in float64 on the float32 weights. SsVP follows docs/method.md §2: in the penultimate block
the CLS query's post-softmax attention over the N patch keys, summed over heads, TopK (ties to the
lower index), and the last block runs on [CLS; selected tokens in ascending id order].

The HF ViT golden also holds a run at image 48 whose position embeddings were resized from the
checkpoint's 4x4 grid to 6x6 by F.interpolate(bicubic, align_corners=False), and
fixtures/vit_pos_embed.safetensors holds float64 grids resized by the same call.

scripts/vit_upstream_check.py checks these reference models against transformers and timm where
those are installed (the CLS embeddings agree to 2e-15 in float64).

Run (Debian's torch): LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp OMP_NUM_THREADS=1 \
  /usr/bin/python3 packages/model/scripts/vit_fixtures.py
"""

import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from safetensors_io import save

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
WIDTH, DEPTH, HEADS, PATCH, IMAGE, MLP, CHANNELS, BATCH, K = 32, 3, 4, 8, 32, 128, 3, 2, 3
PROJ = 24  # CLIP's joint width for visual_projection

def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def attend(q, k, v, heads):
    """(B, T, D) each -> output (B, T, D) and the post-softmax probabilities (B, H, T, T)."""
    b, t, d = q.shape
    split = lambda x: x.view(b, -1, heads, d // heads).transpose(1, 2)
    q, k, v = split(q), split(k), split(v)
    probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), dim=-1)
    return (probs @ v).transpose(1, 2).reshape(b, -1, d), probs


# ---- Hugging Face ViTModel (transformers/models/vit/modeling_vit.py) ----


class HfSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, WIDTH)


class HfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = HfSelfAttention()
        self.output = nn.Module()
        self.output.dense = nn.Linear(WIDTH, WIDTH)

    def forward(self, x):
        a = self.attention
        o, probs = attend(a.query(x), a.key(x), a.value(x), HEADS)
        return self.output.dense(o), probs


class HfLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = HfAttention()
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(WIDTH, MLP)
        self.output = nn.Module()
        self.output.dense = nn.Linear(MLP, WIDTH)
        self.layernorm_before = nn.LayerNorm(WIDTH, eps=1e-12)
        self.layernorm_after = nn.LayerNorm(WIDTH, eps=1e-12)

    def forward(self, x):
        a, probs = self.attention(self.layernorm_before(x))
        x = x + a
        return x + self.output.dense(F.gelu(self.intermediate.dense(self.layernorm_after(x)))), probs


class HfViT(nn.Module):
    def __init__(self, grid):
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.cls_token = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.embeddings.position_embeddings = nn.Parameter(torch.zeros(1, grid * grid + 1, WIDTH))
        self.embeddings.patch_embeddings = nn.Module()
        self.embeddings.patch_embeddings.projection = nn.Conv2d(CHANNELS, WIDTH, PATCH, PATCH)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList([HfLayer() for _ in range(DEPTH)])
        self.layernorm = nn.LayerNorm(WIDTH, eps=1e-12)

    def embed(self, images):
        e = self.embeddings
        x = e.patch_embeddings.projection(images).flatten(2).transpose(1, 2)
        return torch.cat([e.cls_token.expand(x.shape[0], -1, -1), x], 1) + e.position_embeddings

    blocks = property(lambda self: self.encoder.layer)
    final = property(lambda self: self.layernorm)

    @staticmethod
    def ours(name):
        """Our (timm) name of an HF parameter; q/k/v map to one qkv with a part index."""
        name = name.replace("embeddings.cls_token", "cls_token").replace("embeddings.position_embeddings", "pos_embed")
        name = name.replace("embeddings.patch_embeddings.projection", "patch_embed.proj").replace("encoder.layer.", "blocks.")
        for a, b in [("attention.attention.query", "attn.qkv#0"), ("attention.attention.key", "attn.qkv#1"), ("attention.attention.value", "attn.qkv#2"),
                     ("attention.output.dense", "attn.proj"), ("layernorm_before", "norm1"), ("layernorm_after", "norm2"),
                     ("intermediate.dense", "mlp.fc1"), ("output.dense", "mlp.fc2"), ("layernorm", "norm")]:
            name = name.replace(a, b)
        return name


# ---- timm VisionTransformer (timm/models/vision_transformer.py), also our naming ----


class TimmAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv, self.proj = nn.Linear(WIDTH, 3 * WIDTH), nn.Linear(WIDTH, WIDTH)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        o, probs = attend(q, k, v, HEADS)
        return self.proj(o), probs


class TimmMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(WIDTH, MLP), nn.Linear(MLP, WIDTH)


class TimmBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.attn, self.norm2, self.mlp = nn.LayerNorm(WIDTH, eps=1e-6), TimmAttention(), nn.LayerNorm(WIDTH, eps=1e-6), TimmMlp()

    def forward(self, x):
        a, probs = self.attn(self.norm1(x))
        x = x + a
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x)))), probs


class TimmViT(nn.Module):
    def __init__(self, grid):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, WIDTH))
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(CHANNELS, WIDTH, PATCH, PATCH)
        self.blocks = nn.ModuleList([TimmBlock() for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(WIDTH, eps=1e-6)

    def embed(self, images):
        x = self.patch_embed.proj(images).flatten(2).transpose(1, 2)
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed

    final = property(lambda self: self.norm)

    @staticmethod
    def ours(name):
        return name


# ---- Hugging Face CLIP vision tower (transformers/models/clip/modeling_clip.py) ----


class ClipAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(WIDTH, WIDTH) for _ in range(4))

    def forward(self, x):
        o, probs = attend(self.q_proj(x), self.k_proj(x), self.v_proj(x), HEADS)
        return self.out_proj(o), probs


class ClipLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn = ClipAttention()
        self.layer_norm1 = nn.LayerNorm(WIDTH, eps=1e-5)
        self.mlp = TimmMlp()
        self.layer_norm2 = nn.LayerNorm(WIDTH, eps=1e-5)

    def forward(self, x):
        a, probs = self.self_attn(self.layer_norm1(x))
        x = x + a
        return x + self.mlp.fc2(quick_gelu(self.mlp.fc1(self.layer_norm2(x)))), probs


class ClipVision(nn.Module):
    def __init__(self, grid):
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.class_embedding = nn.Parameter(torch.zeros(WIDTH))
        self.embeddings.patch_embedding = nn.Conv2d(CHANNELS, WIDTH, PATCH, PATCH, bias=False)
        self.embeddings.position_embedding = nn.Embedding(grid * grid + 1, WIDTH)
        self.pre_layrnorm = nn.LayerNorm(WIDTH, eps=1e-5)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList([ClipLayer() for _ in range(DEPTH)])
        self.post_layernorm = nn.LayerNorm(WIDTH, eps=1e-5)


class Clip(nn.Module):
    """CLIPModel's vision half: vision_model.* and visual_projection."""

    def __init__(self, grid):
        super().__init__()
        self.vision_model = ClipVision(grid)
        self.visual_projection = nn.Linear(WIDTH, PROJ, bias=False)

    def embed(self, images):
        e = self.vision_model.embeddings
        x = e.patch_embedding(images).flatten(2).transpose(1, 2)
        x = torch.cat([e.class_embedding.expand(x.shape[0], 1, -1), x], 1) + e.position_embedding.weight
        return self.vision_model.pre_layrnorm(x)

    blocks = property(lambda self: self.vision_model.encoder.layers)
    final = property(lambda self: self.vision_model.post_layernorm)

    @staticmethod
    def ours(name):
        name = name.replace("vision_model.", "")
        for a, b in [("embeddings.class_embedding", "cls_token"), ("embeddings.position_embedding.weight", "pos_embed"),
                     ("embeddings.patch_embedding", "patch_embed.proj"), ("pre_layrnorm", "norm_pre"), ("encoder.layers.", "blocks."),
                     ("self_attn.q_proj", "attn.qkv#0"), ("self_attn.k_proj", "attn.qkv#1"), ("self_attn.v_proj", "attn.qkv#2"),
                     ("self_attn.out_proj", "attn.proj"), ("layer_norm1", "norm1"), ("layer_norm2", "norm2"), ("post_layernorm", "norm")]:
            name = name.replace(a, b)
        return name


# ---- shared forward with SsVP ----


def forward(model, images, ssvp_k=None):
    """E_V (B, D) and the SsVP ids (B, K) or None."""
    x = model.embed(images)
    blocks = list(model.blocks)
    ids = None
    for i, blk in enumerate(blocks[:-1]):
        x, probs = blk(x)
        if ssvp_k and i == len(blocks) - 2:
            scores = probs[:, :, 0, 1:].sum(1).detach()  # (B, N): CLS query over patch keys, summed over heads
            order = torch.sort(scores, dim=1, descending=True, stable=True).indices  # ties keep the lower index first
            ids = order[:, :ssvp_k].sort(dim=1).values
            gap = scores.gather(1, order[:, ssvp_k - 1 : ssvp_k]) - scores.gather(1, order[:, ssvp_k : ssvp_k + 1])
            assert gap.min() > 1e-3, f"TopK boundary too close for an exact id test: {gap.flatten().tolist()}"
            x = torch.cat([x[:, :1], x.gather(1, (ids + 1).unsqueeze(-1).expand(-1, -1, x.shape[-1]))], 1)
    x, _ = blocks[-1](x)
    return model.final(x[:, 0]), ids


def randomize(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            is_norm = any(s in name for s in ("norm", "layernorm", "layer_norm", "pre_layrnorm"))
            if is_norm and leaf == "weight":
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            elif is_norm or leaf == "bias":
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif p.dim() >= 2 and "position" not in name and "pos_embed" not in name:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            else:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))


def our_grads(model, prefix):
    """Every parameter's gradient under our (timm) name, q/k/v concatenated into qkv."""
    out, parts = {}, {}
    for name, p in model.named_parameters():
        if name.startswith("visual_projection"):
            continue
        ours = model.ours(name)
        g = p.grad.float()
        if ours.startswith("cls_token"):
            g = g.reshape(1, 1, WIDTH)
        elif ours.startswith("pos_embed"):
            g = g.reshape(1, -1, WIDTH)
        if "#" in ours:
            base, rest = ours.split("#")
            parts.setdefault(base + rest[1:], {})[int(rest[0])] = g
        else:
            out[prefix + ours] = g
    for name, by_part in parts.items():
        out[prefix + name] = torch.cat([by_part[0], by_part[1], by_part[2]], 0)
    return out


def run_case(model, images, weight, ssvp_k, prefix):
    model.zero_grad()
    emb, ids = forward(model, images, ssvp_k)
    (emb * weight).sum().backward()
    out = {prefix + "embedding": emb.float()}
    if ids is not None:
        out[prefix + "ids"] = ids.to(torch.int32)
    out.update(our_grads(model, prefix + "grad."))
    return out


def build(family, seed):
    gen = torch.Generator().manual_seed(seed)
    model = {"hf": HfViT, "timm": TimmViT, "clip": Clip}[family](IMAGE // PATCH)
    randomize(model, gen)
    weights = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    model.double()
    images = torch.randn(BATCH, CHANNELS, IMAGE, IMAGE, generator=gen)
    weight = torch.randn(BATCH, WIDTH, generator=gen)
    return model, weights, images, weight, gen


def main():
    torch.set_grad_enabled(True)
    os.makedirs(OUT, exist_ok=True)

    # timm naming: plain and SsVP.
    model, weights, images, w, _ = build("timm", 1)
    golden = {"images": images, "loss_weight": w}
    golden.update(run_case(model, images.double(), w.double(), None, "plain."))
    golden.update(run_case(model, images.double(), w.double(), K, "ssvp."))
    save(os.path.join(OUT, "vit_timm.safetensors"), weights)
    save(os.path.join(OUT, "vit_timm.golden.safetensors"), golden, {"ssvp_k": str(K), "heads": str(HEADS)})

    # HF ViT naming (no `vit.` prefix, as ViTModel saves it): plain, SsVP, and a resized grid.
    model, weights, images, w, gen = build("hf", 2)
    config = {"model_type": "vit", "hidden_size": WIDTH, "num_hidden_layers": DEPTH, "num_attention_heads": HEADS, "intermediate_size": MLP,
              "image_size": IMAGE, "patch_size": PATCH, "num_channels": CHANNELS, "layer_norm_eps": 1e-12, "hidden_act": "gelu", "qkv_bias": True}
    golden = {"images": images, "loss_weight": w}
    golden.update(run_case(model, images.double(), w.double(), None, "plain."))
    golden.update(run_case(model, images.double(), w.double(), K, "ssvp."))
    big = 48
    pos = model.embeddings.position_embeddings.detach()
    grid = IMAGE // PATCH
    resized = F.interpolate(pos[:, 1:].reshape(1, grid, grid, WIDTH).permute(0, 3, 1, 2), size=(big // PATCH, big // PATCH), mode="bicubic", align_corners=False)
    resized = torch.cat([pos[:, :1], resized.permute(0, 2, 3, 1).reshape(1, -1, WIDTH)], 1)
    model48 = HfViT(big // PATCH).double()
    model48.load_state_dict({**{n: p.detach() for n, p in model.named_parameters() if "position" not in n}, "embeddings.position_embeddings": resized})
    images48 = torch.randn(BATCH, CHANNELS, big, big, generator=gen)
    golden["images48"] = images48
    golden["pos_embed48"] = resized.float()
    golden.update(run_case(model48, images48.double(), w.double(), K, "resized."))
    save(os.path.join(OUT, "vit_hf.safetensors"), weights)
    save(os.path.join(OUT, "vit_hf.golden.safetensors"), golden, {"ssvp_k": str(K), "config": json.dumps(config)})

    # HF CLIP vision tower: QuickGELU, pre-LN, no patch bias, plus visual_projection.
    model, weights, images, w, _ = build("clip", 3)
    config = {"model_type": "clip", "projection_dim": PROJ, "vision_config": {"hidden_size": WIDTH, "num_hidden_layers": DEPTH, "num_attention_heads": HEADS,
              "intermediate_size": MLP, "image_size": IMAGE, "patch_size": PATCH, "layer_norm_eps": 1e-5, "hidden_act": "quick_gelu"}}
    golden = {"images": images, "loss_weight": w}
    golden.update(run_case(model, images.double(), w.double(), None, "plain."))
    golden.update(run_case(model, images.double(), w.double(), K, "ssvp."))
    save(os.path.join(OUT, "vit_clip.safetensors"), weights)
    save(os.path.join(OUT, "vit_clip.golden.safetensors"), golden, {"ssvp_k": str(K), "config": json.dumps(config)})

    # Bicubic position-embedding resizes in float64: upsampling, downsampling, a non-square target.
    gen = torch.Generator().manual_seed(4)
    pos = torch.randn(1, 1 + 7 * 7, 5, generator=gen, dtype=torch.float64)
    out = {"pos": pos}
    for h, w_ in [(12, 12), (5, 5), (9, 14)]:
        r = F.interpolate(pos[:, 1:].reshape(1, 7, 7, 5).permute(0, 3, 1, 2), size=(h, w_), mode="bicubic", align_corners=False)
        out[f"resized_{h}x{w_}"] = torch.cat([pos[:, :1], r.permute(0, 2, 3, 1).reshape(1, -1, 5)], 1)
    save(os.path.join(OUT, "vit_pos_embed.safetensors"), out)


if __name__ == "__main__":
    main()
