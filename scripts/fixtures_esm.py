#!/usr/bin/env python3
"""Parity fixtures for protfam's ESM implementation (src/models/esm.rs).

Makes tiny random-weight ESM models in the exact Hugging Face layout with
`transformers` (the numerical reference), and saves reference outputs for real
sequences of varied length from the bundled Pfam dataset:

  tests/data/models/esm2_tiny/        ESM-2 style (rotary), EsmModel.save_pretrained (transformers 5 names)
  tests/data/models/esm2_tiny_mlm/    same architecture as EsmForMaskedLM (`esm.` prefix) in the layout of
                                      facebook's hub checkpoints (LayerNorm weight/bias, per-layer inv_freq)
  tests/data/models/esm1b_tiny/       ESM-1b style (learned positions, emb_layer_norm_before, token dropout)
  tests/data/models/esm1b_tiny_bin/   ESM-1b style EsmForMaskedLM as pytorch_model.bin in the hub layout

Each directory gets `reference.safetensors` with, for sequence i:
  ids_{i}       token ids from EsmTokenizer (with <cls>/<eos>), int64
  residues_{i}  last hidden state without <cls>/<eos>, [len, hidden]
  layer{K}_{i}  output of block K (fair-esm `repr_layers` numbering), without <cls>/<eos>
  pooled        mean of residues_{i} over residues, [n, hidden]
and metadata `sequences` (JSON list), `layer` (K).
`tests/data/models/esm_tokenizer.safetensors` holds EsmTokenizer ids for extra strings.

Run: python3 scripts/fixtures_esm.py  (needs torch, transformers, safetensors, numpy)
"""

import csv
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import EsmConfig, EsmForMaskedLM, EsmModel, EsmTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "models")

VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q",
         "N", "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>"]


def data_dir():
    env = os.environ.get("PROTFAM_DATA")
    for cand in [env, os.path.join(ROOT, "..", "shared", "data", "pfam35-uniprot20k"),
                 os.path.join(ROOT, "data", "pfam35-uniprot20k")]:
        if cand and os.path.isdir(cand):
            return cand
    sys.exit("pfam35-uniprot20k not found: set PROTFAM_DATA")


def pick_sequences(n=10):
    """~n real domains spread over the length range (sorted by length, evenly spaced quantiles),
    plus the first sequence holding an ambiguous residue (X/B/Z/U/O) if there is one."""
    path = os.path.join(data_dir(), "clustered_split", "test", "data-00000-of-00004")
    with open(path, newline="") as f:
        seqs = [row["sequence"] for row in csv.DictReader(f)]
    seqs = sorted(set(s for s in seqs if len(s) <= 700), key=lambda s: (len(s), s))
    picks = [seqs[round(i * (len(seqs) - 1) / (n - 2))] for i in range(n - 1)]
    odd = [s for s in seqs if any(c in "XBZUO" for c in s) and s not in picks]
    picks.append(odd[0] if odd else seqs[len(seqs) // 3])
    return picks


def randomize(model, seed):
    """Replace every parameter (LayerNorms and biases included) by random values so that no
    part of the computation is trivially an identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name or "layer_norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def esm2_config():
    return EsmConfig(vocab_size=33, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=1026, position_embedding_type="rotary",
                     emb_layer_norm_before=False, token_dropout=True, mask_token_id=32, pad_token_id=1,
                     layer_norm_eps=1e-5, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def esm1b_config():
    return EsmConfig(vocab_size=33, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=48, max_position_embeddings=1026, position_embedding_type="absolute",
                     emb_layer_norm_before=True, token_dropout=True, mask_token_id=32, pad_token_id=1,
                     layer_norm_eps=1e-5, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def reference(esm, tok, seqs, layer):
    """One sequence at a time (no padding): last hidden state and block `layer`'s output."""
    captured = {}
    hook = esm.encoder.layer[layer - 1].register_forward_hook(
        lambda mod, inp, out: captured.__setitem__("h", out[0] if isinstance(out, tuple) else out))
    tensors, pooled = {}, []
    for i, s in enumerate(seqs):
        enc = tok(s, return_tensors="pt")
        with torch.no_grad():
            out = esm(**enc, output_hidden_states=True)
        last = out.last_hidden_state[0, 1:-1].float()
        mid = captured["h"][0, 1:-1].float()
        if out.hidden_states is not None:
            # transformers' hidden_states[layer] is the same block output: check our reading of it.
            assert torch.equal(out.hidden_states[layer][0, 1:-1].float(), mid)
        assert last.shape[0] == len(s)
        tensors[f"ids_{i}"] = enc["input_ids"][0].to(torch.int64).contiguous()
        tensors[f"residues_{i}"] = last.contiguous()
        tensors[f"layer{layer}_{i}"] = mid.contiguous()
        pooled.append(last.mean(0))
    hook.remove()
    tensors["pooled"] = torch.stack(pooled).contiguous()
    # A padded batch through transformers must agree with one-by-one (sanity check of the reference).
    enc = tok(seqs[:4], return_tensors="pt", padding=True)
    with torch.no_grad():
        batched = esm(**enc).last_hidden_state
    for i, s in enumerate(seqs[:4]):
        d = (batched[i, 1:len(s) + 1] - tensors[f"residues_{i}"]).abs().max().item()
        assert d < 1e-4, d
    return tensors


def save_reference(path, tensors, seqs, layer):
    save_file(tensors, os.path.join(path, "reference.safetensors"),
              metadata={"sequences": json.dumps(seqs), "layer": str(layer)})


def make(name, config, seqs, layer, seed, masked_lm=False, legacy_layout=False, bin_weights=False):
    torch.manual_seed(seed)
    path = os.path.join(OUT, name)
    os.makedirs(path, exist_ok=True)
    for f in os.listdir(path):
        os.remove(os.path.join(path, f))
    model = (EsmForMaskedLM(config) if masked_lm else EsmModel(config, add_pooling_layer=False)).eval()
    randomize(model, seed)
    model.config._attn_implementation = "eager"
    esm = model.esm if masked_lm else model
    tok = EsmTokenizer(os.path.join(OUT, "vocab.txt"))
    model.save_pretrained(path)
    if legacy_layout:
        # facebook's hub checkpoints (saved by transformers 4) name LayerNorm parameters `weight`/`bias`
        # (transformers 5 writes `gamma`/`beta`) and, for ESM-2, store the rotary `inv_freq` in every
        # layer (`esm.encoder.layer.N.attention.self.rotary_embeddings.inv_freq`). Write that layout.
        sd = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
        inv = sd.pop("esm.rotary_embeddings.inv_freq", None)
        if inv is not None:
            for i in range(config.num_hidden_layers):
                sd[f"esm.encoder.layer.{i}.attention.self.rotary_embeddings.inv_freq"] = inv.clone()
        for f in os.listdir(path):
            if f.startswith("model") and f.endswith(".safetensors"):
                os.remove(os.path.join(path, f))
        if bin_weights:
            torch.save(sd, os.path.join(path, "pytorch_model.bin"))
        else:
            save_file(sd, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    tok.save_pretrained(path)
    for f in ["tokenizer_config.json", "special_tokens_map.json"]:
        if os.path.exists(os.path.join(path, f)):
            os.remove(os.path.join(path, f))
    # Reload from disk, as a user would, and make the reference from the reloaded model.
    cls = EsmForMaskedLM if masked_lm else EsmModel
    kwargs = {} if masked_lm else {"add_pooling_layer": False}
    reloaded = cls.from_pretrained(path, attn_implementation="eager", **kwargs).eval()
    resm = reloaded.esm if masked_lm else reloaded
    for (k1, v1), (k2, v2) in zip(esm.state_dict().items(), resm.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2), k1
    tensors = reference(resm, tok, seqs, layer)
    save_reference(path, tensors, seqs, layer)
    print(f"{name}: {sorted(os.listdir(path))}")


def tokenizer_fixture(seqs):
    tok = EsmTokenizer(os.path.join(OUT, "vocab.txt"))
    extra = ["ACDEFGHIKLMNPQRSTVWY", "XBUZO", "M", "MKJL", "<mask>"]
    strings = seqs + extra
    tensors = {f"ids_{i}": torch.tensor(tok(s)["input_ids"], dtype=torch.int64) for i, s in enumerate(strings)}
    save_file(tensors, os.path.join(OUT, "esm_tokenizer.safetensors"), metadata={"strings": json.dumps(strings)})


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "vocab.txt"), "w") as f:
        f.write("\n".join(VOCAB))
    seqs = pick_sequences()
    print("lengths:", [len(s) for s in seqs])
    torch.set_num_threads(1)
    make("esm2_tiny", esm2_config(), seqs, layer=2, seed=1)
    make("esm2_tiny_mlm", esm2_config(), seqs, layer=1, seed=2, masked_lm=True, legacy_layout=True)
    make("esm1b_tiny", esm1b_config(), seqs, layer=1, seed=3)
    make("esm1b_tiny_bin", esm1b_config(), seqs, layer=1, seed=4, masked_lm=True, legacy_layout=True, bin_weights=True)
    tokenizer_fixture(seqs)
    os.remove(os.path.join(OUT, "vocab.txt"))


if __name__ == "__main__":
    main()
