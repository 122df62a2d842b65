"""PyTorch CPU peer for `bench peers`: the same ViT training step the bench measures on WebGPU.

A timm-style pre-norm ViT (patch conv, CLS token, learned positions, GELU MLP, final LayerNorm)
with a linear head, cross-entropy and AdamW, at the configuration given as JSON on argv[1]:
{"imageSize", "patchSize", "width", "depth", "heads", "mlpRatio", "classes", "batch", "steps"}.
Prints one JSON object: images/s of the training step, torch's thread count and version, the BLAS
library the process actually loaded and the matmul GFLOP/s it reaches (1024³, f32), so that a peer
running on Debian's reference BLAS (a few GFLOP/s until libopenblas0-openmp is installed) is seen
for what it is.
"""
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, width, heads, hidden):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width, eps=1e-6), nn.LayerNorm(width, eps=1e-6)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.fc1, self.fc2 = nn.Linear(width, hidden), nn.Linear(hidden, width)
        self.heads = heads

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1) @ v
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    def __init__(self, c):
        super().__init__()
        w, grid = c["width"], c["imageSize"] // c["patchSize"]
        self.patch = nn.Conv2d(3, w, c["patchSize"], c["patchSize"])
        self.cls = nn.Parameter(torch.zeros(1, 1, w))
        self.pos = nn.Parameter(0.02 * torch.randn(1, grid * grid + 1, w))
        self.blocks = nn.ModuleList([Block(w, c["heads"], w * c["mlpRatio"]) for _ in range(c["depth"])])
        self.norm = nn.LayerNorm(w, eps=1e-6)
        self.head = nn.Linear(w, c["classes"])

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x[:, 0]))


def loaded_blas():
    """The BLAS shared object mapped into this process (what runs, not what torch was built against)."""
    names = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1] if line.split() else ""
            base = path.rsplit("/", 1)[-1]
            if "blas" in base or "mkl" in base or "blis" in base:
                names.add(path)
    return ", ".join(sorted(names)) or "none found"


def matmul_gflops(n=1024, repeats=3):
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / sorted(times)[len(times) // 2] / 1e9


def main():
    c = json.loads(sys.argv[1])
    torch.manual_seed(0)
    model = ViT(c)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(c["batch"], 3, c["imageSize"], c["imageSize"])
    labels = torch.arange(c["batch"]) % c["classes"]

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        opt.step()

    step()
    times = []
    for _ in range(c["steps"]):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    print(
        json.dumps(
            {
                "imagesPerSec": c["batch"] / times[len(times) // 2],
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "blas": loaded_blas(),
                "matmulGflops": matmul_gflops(),
            }
        )
    )


if __name__ == "__main__":
    main()
