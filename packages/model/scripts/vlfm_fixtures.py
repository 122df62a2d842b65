"""Golden fixtures for VLFM, from an independent PyTorch implementation.

The module as the paper describes it: position-wise 1x1 convolutions over the C+1 sequence
[E_0 = V; E_1..E_C = T], cross-modal attention of Q_0 over all C+1 keys, a translation layer
(1x1 conv D->4D, GELU, 1x1 conv 4D->D) and a linear classifier.

Run: LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp /usr/bin/python3 scripts/vlfm_fixtures.py
Writes fixtures/vlfm.safetensors.
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from safetensors_io import save

HERE = os.path.dirname(os.path.abspath(__file__))


class VLFM(nn.Module):
    def __init__(self, d, c):
        super().__init__()
        self.q = nn.Conv1d(d, d, 1)
        self.k = nn.Conv1d(d, d, 1)
        self.v = nn.Conv1d(d, d, 1)
        self.fc1 = nn.Conv1d(d, 4 * d, 1)
        self.fc2 = nn.Conv1d(4 * d, d, 1)
        self.head = nn.Linear(d, c)
        self.d = d

    def forward(self, image, text):
        b = image.shape[0]
        seq = torch.cat([image[:, None, :], text[None].expand(b, -1, -1)], 1).transpose(1, 2)  # (B, D, C+1)
        q0 = self.q(seq)[:, :, :1]  # (B, D, 1)
        k = self.k(seq)  # (B, D, C+1)
        v = self.v(seq)
        s = torch.softmax((q0.transpose(1, 2) @ k) / math.sqrt(self.d), dim=-1)  # (B, 1, C+1)
        fused = v @ s.transpose(1, 2)  # (B, D, 1)
        translated = self.fc2(F.gelu(self.fc1(fused)))[:, :, 0]
        return self.head(translated)


def main():
    torch.manual_seed(0)
    b, d, c = 3, 16, 5
    m = VLFM(d, c).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)
    image = torch.randn(b, d, dtype=torch.float64, requires_grad=True)
    text = torch.randn(c, d, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([1, 4, 0])
    logits = m(image, text)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    out = {"input.image": image, "input.text": text, "input.labels": labels.int(), "output.logits": logits, "output.loss": loss.reshape(1)}
    out["grad.image"] = image.grad
    out["grad.text"] = text.grad
    names = {"q": "q", "k": "k", "v": "v", "fc1": "trans.fc1", "fc2": "trans.fc2", "head": "head"}
    for mod, ours in names.items():
        layer = getattr(m, mod)
        w = layer.weight.reshape(layer.weight.shape[0], -1)  # 1x1 conv kernels as matrices
        out[f"param.{ours}.weight"] = w
        out[f"param.{ours}.bias"] = layer.bias
        out[f"grad.{ours}.weight"] = layer.weight.grad.reshape(w.shape)
        out[f"grad.{ours}.bias"] = layer.bias.grad
    save(os.path.join(HERE, "..", "fixtures", "vlfm.safetensors"), {k: (v.float() if v.dtype == torch.float64 else v) for k, v in out.items()})


if __name__ == "__main__":
    main()
