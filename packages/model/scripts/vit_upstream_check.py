"""Checks vit_fixtures.py's plain-torch reference models against the upstream libraries.

Where `transformers`, `timm` and `safetensors` are installed (not on the development machine),
this loads each fixture checkpoint into the real upstream model with strict name matching
(transformers' ViTModel and CLIPVisionModelWithProjection, timm's VisionTransformer) and compares
the CLS embedding with the reference's, in float64; it also compares the bicubic position-embedding
resize with timm's resample_abs_pos_embed and HF ViT's interpolate_pos_encoding. Forward equality
on random weights makes the reference's gradients the upstream ones too.

Run: python3 packages/model/scripts/vit_upstream_check.py
"""

import os
import shutil
import sys
import tempfile

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vit_fixtures as ref  # noqa: E402

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
GRID = ref.IMAGE // ref.PATCH
worst = 0.0


def compare(what, got, want, tol=1e-9):
    global worst
    err = (got.double() - want.double()).abs().max().item()
    scale = want.double().abs().max().item()
    worst = max(worst, err / scale)
    print(f"{what}: max |diff| {err:.3e} (max |value| {scale:.3e})")
    assert err <= tol * max(1.0, scale), f"{what} differs"


def from_pretrained(cls, fixture, config, what):
    """Loads a fixture the way a published checkpoint loads (with transformers' key conversions)."""
    d = tempfile.mkdtemp()
    shutil.copy(os.path.join(FIX, fixture), os.path.join(d, "model.safetensors"))
    config.save_pretrained(d)
    model, info = cls.from_pretrained(d, output_loading_info=True)
    # ViTModel's pooler is not part of E_V (the fixture has none); position_ids is a buffer.
    bad = {k: [x for x in v if "position_ids" not in str(x) and "pooler" not in str(x)] for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    assert not any(bad.values()), f"{what}: {bad}"
    saved = tempfile.mkdtemp()
    model.save_pretrained(saved)
    keys = sorted(load_file(os.path.join(saved, "model.safetensors")).keys())
    print(f"{what}: loaded with no missing/unexpected keys; save_pretrained writes e.g. {[k for k in keys if '.1.' in k][:4]}")
    return model.eval().double()


def strict_load(model, state, what):
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    assert not missing and not unexpected, f"{what}: missing {missing}, unexpected {unexpected}"


def reference(family, state):
    model = {"hf": ref.HfViT, "timm": ref.TimmViT, "clip": ref.Clip}[family](GRID)
    model.load_state_dict(state)
    return model.double()


def main():
    torch.manual_seed(0)
    images = torch.randn(2, 3, ref.IMAGE, ref.IMAGE, dtype=torch.float64)

    # Hugging Face ViT
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, ViTConfig, ViTModel

    state = load_file(os.path.join(FIX, "vit_hf.safetensors"))
    cfg = ViTConfig(hidden_size=ref.WIDTH, num_hidden_layers=ref.DEPTH, num_attention_heads=ref.HEADS, intermediate_size=ref.MLP, image_size=ref.IMAGE,
                    patch_size=ref.PATCH, num_channels=ref.CHANNELS, layer_norm_eps=1e-12, hidden_act="gelu", qkv_bias=True)
    hf = from_pretrained(ViTModel, "vit_hf.safetensors", cfg, "HF ViTModel")
    ours = reference("hf", state)
    with torch.no_grad():
        compare("HF ViTModel CLS", hf(images).last_hidden_state[:, 0], ref.forward(ours, images)[0])
        # interpolate_pos_encoding at 48: the same bicubic resize as ours.
        big = torch.randn(2, 3, 48, 48, dtype=torch.float64)
        golden = load_file(os.path.join(FIX, "vit_hf.golden.safetensors"))
        ours48 = ref.HfViT(48 // ref.PATCH).double()
        ours48.load_state_dict({**{k: v.double() for k, v in state.items() if "position" not in k}, "embeddings.position_embeddings": golden["pos_embed48"].double()})
        compare("HF ViTModel interpolate_pos_encoding at 48", hf(big, interpolate_pos_encoding=True).last_hidden_state[:, 0], ref.forward(ours48, big)[0], tol=1e-6)

    # Hugging Face CLIP vision tower with its projection
    state = load_file(os.path.join(FIX, "vit_clip.safetensors"))
    cfg = CLIPVisionConfig(hidden_size=ref.WIDTH, intermediate_size=ref.MLP, num_attention_heads=ref.HEADS, num_hidden_layers=ref.DEPTH, image_size=ref.IMAGE,
                           patch_size=ref.PATCH, num_channels=ref.CHANNELS, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=ref.PROJ)
    clip = from_pretrained(CLIPVisionModelWithProjection, "vit_clip.safetensors", cfg, "HF CLIPVisionModelWithProjection")
    ours = reference("clip", state)
    with torch.no_grad():
        out = clip(pixel_values=images, output_hidden_states=True)
        emb = ref.forward(ours, images)[0]
        compare("HF CLIP pooled (post_layernorm CLS)", clip.vision_model(pixel_values=images).pooler_output, emb)
        compare("HF CLIP image_embeds", out.image_embeds, ours.visual_projection(emb))

    # timm
    import timm
    from timm.layers import resample_abs_pos_embed

    state = load_file(os.path.join(FIX, "vit_timm.safetensors"))
    tm = timm.models.vision_transformer.VisionTransformer(img_size=ref.IMAGE, patch_size=ref.PATCH, in_chans=ref.CHANNELS, num_classes=0, global_pool="token",
                                                         embed_dim=ref.WIDTH, depth=ref.DEPTH, num_heads=ref.HEADS, mlp_ratio=ref.MLP / ref.WIDTH, qkv_bias=True).eval()
    strict_load(tm, state, "timm VisionTransformer")
    tm.double()
    ours = reference("timm", state)
    with torch.no_grad():
        compare("timm VisionTransformer CLS", tm(images), ref.forward(ours, images)[0])

    # The position-embedding resize fixture against timm's resampler (antialias off, as specified);
    # timm interpolates in float32 whatever the input dtype, hence the float32-sized tolerance.
    pe = load_file(os.path.join(FIX, "vit_pos_embed.safetensors"))
    for h, w in [(12, 12), (5, 5), (9, 14)]:
        got = resample_abs_pos_embed(pe["pos"], new_size=[h, w], old_size=[7, 7], num_prefix_tokens=1, interpolation="bicubic", antialias=False)
        compare(f"timm resample_abs_pos_embed 7x7->{h}x{w}", got, pe[f"resized_{h}x{w}"], tol=2e-6)
    aa = resample_abs_pos_embed(pe["pos"], new_size=[12, 12], old_size=[7, 7], num_prefix_tokens=1, interpolation="bicubic", antialias=True)
    print(f"note: timm's default antialias=True differs from antialias=False by {(aa - pe['resized_12x12']).abs().max().item():.3e} at 7x7->12x12")
    print(f"all upstream checks passed; worst relative difference {worst:.3e}")


if __name__ == "__main__":
    main()
