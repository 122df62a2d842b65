"""Golden fixtures for CLIP's tokenizer, text encoder and DaTP, from an implementation independent
of ours: a tiny byte-level BPE learned here, OpenAI's `simple_tokenizer.py` algorithm re-written
with plain `unicodedata` (no `regex` module), and a small CLIP text model in plain torch with the
parameter names of Hugging Face's CLIPTextModelWithProjection, evaluated in float64.

Writes (into ../fixtures):
  tokenizer-clip-tiny.json   a tokenizer.json in the structure of HF's openai/clip-vit-* files
  tokenizer-cases.json       texts and the ids the reference tokenizer gives them (no SOT/EOT)
  text_clip_tiny.safetensors weights (F32), token batch, DaTP prompts and the outputs/gradients

Run: LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp OMP_NUM_THREADS=1 \
       /usr/bin/python3 packages/model/scripts/text_fixtures.py
"""

import json
import os
import unicodedata
from collections import Counter

import torch

from safetensors_io import save

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures")
SOT, EOT = "<|startoftext|>", "<|endoftext|>"

# ---------------------------------------------------------------- tokenizer (reference) ----


def bytes_to_unicode():
    """OpenAI's reversible byte -> printable character table (the order defines the first ids)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_ENCODER = bytes_to_unicode()


def is_letter(c):
    return unicodedata.category(c).startswith("L")


def is_number(c):
    return unicodedata.category(c).startswith("N")


def clean(text):
    """ftfy's NFC, then whitespace_clean (runs of whitespace -> one space, stripped), then lower()."""
    text = unicodedata.normalize("NFC", text)
    return " ".join(text.split()).lower()


CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]


def pre_tokenize(text):
    """The pattern <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+
    scanned by hand: alternatives tried in order at each position, whitespace between matches dropped."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        hit = next((s for s in [SOT, EOT] + CONTRACTIONS if text.startswith(s, i)), None)
        if hit is not None:
            j = i + len(hit)
        elif is_letter(c):
            j = i + 1
            while j < len(text) and is_letter(text[j]):
                j += 1
        elif is_number(c):
            j = i + 1
        elif not c.isspace():
            j = i + 1
            while j < len(text) and not (text[j].isspace() or is_letter(text[j]) or is_number(text[j])):
                j += 1
        else:
            i += 1
            continue
        out.append(text[i:j])
        i = j
    return out


def get_pairs(word):
    return set(zip(word[:-1], word[1:]))


def bpe(token, ranks):
    """OpenAI simple_tokenizer.bpe: merge the lowest-ranked adjacent pair everywhere, repeat."""
    if token in (SOT, EOT):
        return [token]
    word = tuple(token[:-1]) + (token[-1] + "</w>",)
    pairs = get_pairs(word)
    if not pairs:
        return [token + "</w>"]
    while True:
        bigram = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if bigram not in ranks:
            break
        first, second = bigram
        new_word = []
        i = 0
        while i < len(word):
            try:
                j = word.index(first, i)
                new_word.extend(word[i:j])
                i = j
            except ValueError:
                new_word.extend(word[i:])
                break
            if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                new_word.append(first + second)
                i += 2
            else:
                new_word.append(word[i])
                i += 1
        word = tuple(new_word)
        if len(word) == 1:
            break
        pairs = get_pairs(word)
    return list(word)


def encode(text, vocab, ranks):
    ids = []
    for tok in pre_tokenize(clean(text)):
        if tok not in (SOT, EOT):
            tok = "".join(BYTE_ENCODER[b] for b in tok.encode("utf-8"))
        ids.extend(vocab[t] for t in bpe(tok, ranks))
    return ids


# ---------------------------------------------------------------- tokenizer (learned) ----

CORPUS = """
a photo of a bird. a photo of a dog. a photo of food. a photo of a small bird with a red breast.
the black-footed albatross is a large seabird of the north pacific. the laysan albatross nests on islands.
the painted bunting is a bird in the cardinal family; the indigo bunting is blue. a rusty blackbird,
a brewer's blackbird and a red-winged blackbird sit on the fence. the ruby-throated hummingbird hovers.
dogs: the golden retriever, the labrador retriever, the german shepherd, the border collie and the beagle.
food: apple pie, baby back ribs, baklava, beef carpaccio, beef tartare, beet salad, beignets, bibimbap,
bread pudding, breakfast burrito, bruschetta, caesar salad, cannoli, caprese salad, carrot cake.
it's the bird's nest; they're here, we've seen it, i'm sure we'll find what you'd like.
photographs of birds, photographs of dogs, photographs of dishes; the birds are singing in the morning.
"""


def learn_bpe(corpus, num_merges):
    """Classic BPE learning over byte-level words ending in </w>: most frequent pair first, ties by
    the pair itself (so the result is deterministic)."""
    words = Counter()
    for tok in pre_tokenize(clean(corpus)):
        chars = [BYTE_ENCODER[b] for b in tok.encode("utf-8")]
        words[tuple(chars[:-1]) + (chars[-1] + "</w>",)] += 1
    merges = []
    for _ in range(num_merges):
        counts = Counter()
        for w, f in words.items():
            for p in zip(w[:-1], w[1:]):
                counts[p] += f
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        merged = Counter()
        for w, f in words.items():
            out = []
            i = 0
            while i < len(w):
                if i < len(w) - 1 and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += f
        words = merged
    return merges


def build_tokenizer():
    merges = learn_bpe(CORPUS, 300)
    base = list(BYTE_ENCODER.values())
    tokens = base + [c + "</w>" for c in base]
    for a, b in merges:
        if a + b not in tokens:
            tokens.append(a + b)
    tokens += [SOT, EOT]
    vocab = {t: i for i, t in enumerate(tokens)}
    ranks = {m: i for i, m in enumerate(merges)}
    pattern = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
    special = dict(single_word=False, lstrip=False, rstrip=False, normalized=True, special=True)
    tokenizer_json = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [dict(id=vocab[SOT], content=SOT, **special), dict(id=vocab[EOT], content=EOT, **special)],
        "normalizer": {
            "type": "Sequence",
            "normalizers": [{"type": "NFC"}, {"type": "Replace", "pattern": {"Regex": r"\s+"}, "content": " "}, {"type": "Lowercase"}],
        },
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Removed", "invert": True},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
            ],
        },
        "post_processor": {"type": "RobertaProcessing", "sep": [EOT, vocab[EOT]], "cls": [SOT, vocab[SOT]], "trim_offsets": False, "add_prefix_space": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": EOT,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "</w>",
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": vocab,
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }
    return tokenizer_json, vocab, ranks


TOKENIZER_CASES = [
    ("case", "A Photo of a BIRD"),
    ("punctuation", "Hello, world!!! (red-winged) ...?"),
    ("contractions", "it's the BIRD'S nest; they're here, we've seen it, I'm sure we'll find what you'd like don't"),
    ("numbers", "Numbers: 2024, 3.14 and 1000000 x² ½"),
    ("letters and digits", "iPhone15Pro a1b2"),
    ("accents", "café naïve résumé crème brûlée"),
    ("decomposed accents", "cafe\u0301 nai\u0308ve"),
    ("cjk", "北京烤鸭 寿司 bibimbap 비빔밥"),
    ("emoji", "bird 🐦 dog 🐕 thumbs 👍🏽 noodles🍜"),
    ("whitespace", "  tabs\tand\nnewlines\r\n  and   runs\u00a0 \t "),
    ("special tokens", "<|startoftext|>hello<|ENDOFTEXT|>"),
    ("typographic quote", "brewer’s blackbird"),
    ("unseen word", "xylophone zzzz"),
    ("empty", ""),
    ("only whitespace", " \t\n "),
]

# ---------------------------------------------------------------- text model ----

WIDTH, LAYERS, HEADS, CONTEXT, PROJ = 32, 2, 4, 77, 24
C, J = 3, 4
SUPER = "songbird"


def text_param_shapes(vocab_size):
    s = {
        "text_model.embeddings.token_embedding.weight": (vocab_size, WIDTH),
        "text_model.embeddings.position_embedding.weight": (CONTEXT, WIDTH),
        "text_model.final_layer_norm.weight": (WIDTH,),
        "text_model.final_layer_norm.bias": (WIDTH,),
        "text_projection.weight": (PROJ, WIDTH),
    }
    for n in range(LAYERS):
        p = f"text_model.encoder.layers.{n}."
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"]:
            s[p + f"self_attn.{proj}.weight"] = (WIDTH, WIDTH)
            s[p + f"self_attn.{proj}.bias"] = (WIDTH,)
        for ln in ["layer_norm1", "layer_norm2"]:
            s[p + f"{ln}.weight"] = (WIDTH,)
            s[p + f"{ln}.bias"] = (WIDTH,)
        s[p + "mlp.fc1.weight"] = (4 * WIDTH, WIDTH)
        s[p + "mlp.fc1.bias"] = (4 * WIDTH,)
        s[p + "mlp.fc2.weight"] = (WIDTH, 4 * WIDTH)
        s[p + "mlp.fc2.bias"] = (WIDTH,)
    return s


def init_weights(shapes, gen):
    """f32 values (then widened to f64): spread enough that every layer matters."""
    w = {}
    for name, shape in shapes.items():
        if name.endswith("layer_norm1.weight") or name.endswith("layer_norm2.weight") or name.endswith("final_layer_norm.weight"):
            v = 1 + 0.2 * torch.randn(shape, generator=gen)
        elif name.endswith(".bias"):
            v = 0.1 * torch.randn(shape, generator=gen)
        elif "embedding" in name:
            v = 0.5 * torch.randn(shape, generator=gen)
        else:
            v = torch.randn(shape, generator=gen) / shape[-1] ** 0.5
        w[name] = v.float().double().requires_grad_(True)
    return w


def layer_norm(x, w, b):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, 1e-5)


def encoder(w, h):
    """CLIPEncoder over embeddings h (B, L, W) with the causal mask; returns the final-LN output."""
    B, L, W = h.shape
    d = W // HEADS
    mask = torch.full((L, L), float("-inf"), dtype=h.dtype).triu(1)
    for n in range(LAYERS):
        p = f"text_model.encoder.layers.{n}."
        lin = lambda x, name: x @ w[p + name + ".weight"].T + w[p + name + ".bias"]
        r = h
        x = layer_norm(h, w[p + "layer_norm1.weight"], w[p + "layer_norm1.bias"])
        q = lin(x, "self_attn.q_proj").view(B, L, HEADS, d).transpose(1, 2) * d**-0.5
        k = lin(x, "self_attn.k_proj").view(B, L, HEADS, d).transpose(1, 2)
        v = lin(x, "self_attn.v_proj").view(B, L, HEADS, d).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1) @ v
        h = r + lin(a.transpose(1, 2).reshape(B, L, W), "self_attn.out_proj")
        x = layer_norm(h, w[p + "layer_norm2.weight"], w[p + "layer_norm2.bias"])
        x = lin(x, "mlp.fc1")
        x = x * torch.sigmoid(1.702 * x)
        h = h + lin(x, "mlp.fc2")
    return layer_norm(h, w["text_model.final_layer_norm.weight"], w["text_model.final_layer_norm.bias"])


def text_features(w, embeds, eot):
    """CLIPTextModelWithProjection's text_embeds, from input embeddings and EOT positions."""
    L = embeds.shape[1]
    h = embeds + w["text_model.embeddings.position_embedding.weight"][:L]
    out = encoder(w, h)
    pooled = out[torch.arange(out.shape[0]), eot]
    return pooled @ w["text_projection.weight"].T


def main():
    torch.set_default_dtype(torch.float64)
    os.makedirs(OUT, exist_ok=True)
    tok_json, vocab, ranks = build_tokenizer()
    with open(os.path.join(OUT, "tokenizer-clip-tiny.json"), "w", encoding="utf-8") as f:
        json.dump(tok_json, f, ensure_ascii=False, indent=1)
    cases = [{"name": n, "text": t, "ids": encode(t, vocab, ranks)} for n, t in TOKENIZER_CASES]
    with open(os.path.join(OUT, "tokenizer-cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
    sot, eot = vocab[SOT], vocab[EOT]
    print(f"vocab {len(vocab)}, merges {len(ranks)}")

    gen = torch.Generator().manual_seed(1234)
    w = init_weights(text_param_shapes(len(vocab)), gen)
    table = w["text_model.embeddings.token_embedding.weight"]

    # Ordinary text: CLIP's tokenize() layout, SOT ids EOT then zeros up to the context length.
    texts = ["a photo of a red-winged blackbird.", "A Photo of Baklava!"]
    ids = torch.zeros((len(texts), CONTEXT), dtype=torch.int32)
    for b, t in enumerate(texts):
        row = [sot] + encode(t, vocab, ranks) + [eot]
        ids[b, : len(row)] = torch.tensor(row, dtype=torch.int32)
    eot_pos = ids.long().argmax(dim=-1)
    text_embeds = text_features(w, table[ids.long()], eot_pos)

    # DaTP: [SOT, X^c_1..X^c_J, tokens(super-category), EOT], run only up to EOT.
    cls = encode(SUPER, vocab, ranks)
    L = J + len(cls) + 2
    x = (0.5 * torch.randn((C, J, WIDTH), generator=gen)).float().double().requires_grad_(True)
    pre = table[sot].expand(C, 1, WIDTH)
    post = table[torch.tensor(cls + [eot])].expand(C, len(cls) + 1, WIDTH)
    seq = torch.cat([pre, x, post], dim=1)
    T = text_features(w, seq, torch.full((C,), L - 1))
    # The same prompts padded to the full context (zeros after EOT, as CLIP's tokenize): equal T.
    pad = table[torch.zeros(CONTEXT - L, dtype=torch.long)].expand(C, CONTEXT - L, WIDTH)
    T77 = text_features(w, torch.cat([seq, pad], dim=1), torch.full((C,), L - 1))
    assert torch.allclose(T, T77, rtol=0, atol=1e-12), "causal mask: truncation must not change T"
    R = torch.randn((C, PROJ), generator=gen).float().double()
    (T * R).sum().backward()

    f32 = lambda t: t.detach().float()
    out = {k: f32(v) for k, v in w.items()}
    out.update({"grad." + k: f32(v.grad) for k, v in w.items()})
    out.update(
        {
            "batch.ids": ids,
            "batch.text_embeds": f32(text_embeds),
            "datp.x": f32(x),
            "datp.class_ids": torch.tensor(cls, dtype=torch.int32),
            "datp.T": f32(T),
            "datp.R": f32(R),
            "datp.grad_x": f32(x.grad),
        }
    )
    save(os.path.join(OUT, "text_clip_tiny.safetensors"), out)
    print(f"DaTP length {L} (class tokens {cls}), |T| {T.abs().max().item():.3f}")


if __name__ == "__main__":
    main()
