"""Golden fixtures for the assembled MP-FGVC, from independent PyTorch pieces.

The image encoder is vit_fixtures.py's timm ViT with SsVP, the text side text_fixtures.py's CLIP text
tower under DaTP prompts, VLFM vlfm_fixtures.py's 1x1-conv module; this script adds what the
assembly owns (docs/method.md §3, §6, §8): V = P_v E_V, the vision head on E_V, the cosine logits
cos(V, T^c)/tau, L_1 = CE(vision) + CE(cosine), and stage 2's L_2 = CE(VLFM(V, T)) with both
encoders and the prompts frozen. Everything runs in float64; the file keeps f32 weights under
MPFGVC's parameter names, the inputs, both losses, the logits, the SsVP ids, and the gradient of
every parameter each stage trains.

Run: LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp OMP_NUM_THREADS=1 \
  /usr/bin/python3 scripts/mpfgvc_fixtures.py   (writes fixtures/mpfgvc.safetensors)
"""
import json
import os

import torch
import torch.nn.functional as F

import text_fixtures as text
import vit_fixtures as vit
from safetensors_io import save
from vlfm_fixtures import VLFM

HERE = os.path.dirname(os.path.abspath(__file__))
C, J, TAU, VOCAB = 3, 2, 0.07, 50
SOT, EOT, CLASS_IDS = VOCAB - 2, VOCAB - 1, [7, 9]

CONFIG = {
    "vision": {"imageSize": vit.IMAGE, "patchSize": vit.PATCH, "width": vit.WIDTH, "depth": vit.DEPTH, "heads": vit.HEADS, "mlpRatio": vit.MLP // vit.WIDTH,
               "activation": "gelu", "preNorm": False, "layerNormEps": 1e-6, "channels": vit.CHANNELS},
    "text": {"vocabSize": VOCAB, "contextLength": text.CONTEXT, "width": text.WIDTH, "depth": text.LAYERS, "heads": text.HEADS, "mlpRatio": 4,
             "activation": "quick_gelu", "layerNormEps": 1e-5},
    "embedDim": text.PROJ,
    "numClasses": C,
    "selectK": vit.K,
    "promptLength": J,
    "superCategory": "bird",
    "temperature": TAU,
    "visionHeadOn": "embedding",
}


def main():
    model, vit_weights, images, _, gen = vit.build("timm", 11)
    tw = text.init_weights(text.text_param_shapes(VOCAB), gen)
    prompts = (0.5 * torch.randn(C, J, text.WIDTH, generator=gen)).double().requires_grad_(True)
    proj = (torch.randn(text.PROJ, vit.WIDTH, generator=gen) / vit.WIDTH**0.5).double().requires_grad_(True)
    head_w = (0.3 * torch.randn(C, vit.WIDTH, generator=gen)).double().requires_grad_(True)
    head_b = (0.1 * torch.randn(C, generator=gen)).double().requires_grad_(True)
    fusion = VLFM(text.PROJ, C).double()
    with torch.no_grad():
        for p in fusion.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    images = images.double()
    labels = torch.tensor([2, 0])

    # Stage 1: T from the DaTP prompts, L_1 = CE(vision head) + CE(cos / tau).
    table = tw["text_model.embeddings.token_embedding.weight"]
    fixed = lambda i: table[i].expand(C, 1, -1)
    embeds = torch.cat([fixed(SOT), prompts] + [fixed(i) for i in CLASS_IDS] + [fixed(EOT)], 1)
    T = text.text_features(tw, embeds, torch.full((C,), embeds.shape[1] - 1))
    e_v, ids = vit.forward(model, images, vit.K)
    v = e_v @ proj.T
    vision_logits = e_v @ head_w.T + head_b
    text_logits = F.normalize(v, dim=-1) @ F.normalize(T, dim=-1).T / TAU
    loss1 = F.cross_entropy(vision_logits, labels) + F.cross_entropy(text_logits, labels)
    loss1.backward()

    # Stage 2: VLFM on the frozen V and T.
    vlfm_logits = fusion(v.detach(), T.detach())
    loss2 = F.cross_entropy(vlfm_logits, labels)
    loss2.backward()

    out = {
        "input.images": images,
        "input.labels": labels.int(),
        "output.loss1": loss1.reshape(1),
        "output.loss2": loss2.reshape(1),
        "output.vision_logits": vision_logits,
        "output.text_logits": text_logits,
        "output.vlfm_logits": vlfm_logits,
        "output.ids": ids.int(),
    }
    for name, w in vit_weights.items():
        out[f"param.vision.{name}"] = w
    out.update({k.replace("grad.", "grad.vision.", 1): g for k, g in vit.our_grads(model, "grad.").items()})
    for name, w in tw.items():
        out[f"param.text.{name}"] = w
    own = {"datp.prompts": prompts, "visual_projection.weight": proj, "vision_head.weight": head_w, "vision_head.bias": head_b}
    for name, p in own.items():
        out[f"param.{name}"] = p
        out[f"grad.{name}"] = p.grad
    for mod, ours in {"q": "q", "k": "k", "v": "v", "fc1": "trans.fc1", "fc2": "trans.fc2", "head": "head"}.items():
        layer = getattr(fusion, mod)
        w = layer.weight.reshape(layer.weight.shape[0], -1)
        out[f"param.vlfm.{ours}.weight"] = w
        out[f"param.vlfm.{ours}.bias"] = layer.bias
        out[f"grad.vlfm.{ours}.weight"] = layer.weight.grad.reshape(w.shape)
        out[f"grad.vlfm.{ours}.bias"] = layer.bias.grad
    tensors = {k: (v.detach().float() if v.dtype == torch.float64 else v.detach()) for k, v in out.items()}
    meta = {"config": json.dumps(CONFIG), "tokens": json.dumps({"classIds": CLASS_IDS, "sot": SOT, "eot": EOT})}
    save(os.path.join(HERE, "..", "fixtures", "mpfgvc.safetensors"), tensors, meta)


if __name__ == "__main__":
    main()
