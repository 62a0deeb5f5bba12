#!/usr/bin/env python3
"""Benchmark peer for ESM: Hugging Face transformers' `EsmModel` on PyTorch CPU
with fair-esm-style batches (sequences sorted by length, each batch filled up to
`--toks-per-batch` tokens, as fair-esm's `FastaBatchedDataset.get_batch_indices`
does for `extract.py`), mean over residue positions of the last hidden layer,
on the first N domains of the bundled clustered test split.

The model is an ESM-2 t12_35M-sized model (12 layers, 480 hidden, 20 heads,
rotary positions) with seeded random weights: speed does not depend on the
values. `--save-model DIR` writes it first in the Hugging Face layout
(`config.json`, `model.safetensors`, `vocab.txt`), so protfam's bench loads the
very same weights. `--bf16` runs the model under
`torch.autocast("cpu", dtype=torch.bfloat16)` (PyTorch's fastest CPU mode: its
matmuls in bf16 on oneDNN, AMX where the CPU has it; LayerNorm, softmax and
the residual sums in f32). `--save-pooled FILE` writes the pooled vectors as
raw little-endian f32, N x 480, in input order. Prints one JSON line:
residues/s and peak RSS.

Usage: python3 benches/peers/esm_peer.py [--n 500] [--save-model DIR] [--threads 2] [--bf16]
       [--save-pooled FILE]
"""

from _common import (data_root, embed_timed, length_sorted_batches, load_sequences, report, save_pooled,
                     torch_peer_arguments)

T12_35M = dict(
    vocab_size=33,
    hidden_size=480,
    num_hidden_layers=12,
    num_attention_heads=20,
    intermediate_size=1920,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    max_position_embeddings=1026,
    position_embedding_type="rotary",
    layer_norm_eps=1e-5,
    token_dropout=True,
    emb_layer_norm_before=False,
    mask_token_id=32,
    pad_token_id=1,
    is_folding_model=False,
)

ESM_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K",
             "Q", "N", "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>"]


def build_model(seed: int):
    import torch
    from transformers import EsmConfig, EsmModel

    torch.manual_seed(seed)
    config = EsmConfig(**T12_35M)
    model = EsmModel(config, add_pooling_layer=False)
    model.eval()
    return model


def save_model(model, directory: str):
    from pathlib import Path

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    (out / "vocab.txt").write_text("\n".join(ESM_VOCAB) + "\n")


def main():
    ap = torch_peer_arguments(500)
    args = ap.parse_args()
    seqs = load_sequences(data_root(args.data), args.n, args.split)

    import torch

    torch.set_num_threads(args.threads)
    model = build_model(args.seed)
    if args.save_model:
        save_model(model, args.save_model)
    index = {tok: i for i, tok in enumerate(ESM_VOCAB)}

    def encode(batch):
        width = max(len(seqs[i]) for i in batch) + 2
        ids = torch.full((len(batch), width), index["<pad>"], dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            toks = [index["<cls>"]] + [index.get(c, index["<unk>"]) for c in seqs[i]] + [index["<eos>"]]
            ids[row, : len(toks)] = torch.tensor(toks)
            mask[row, : len(toks)] = 1
        return ids, mask

    batches = length_sorted_batches(seqs, args.toks_per_batch, 2)  # <cls> ... <eos>
    pooled, seconds = embed_timed(model, seqs, batches, encode, 1, args.bf16)
    assert all(p is not None and p.shape == (480,) for p in pooled)
    if args.save_pooled:
        save_pooled(pooled, args.save_pooled)
    mode = "autocast bf16" if args.bf16 else "f32"
    report(f"transformers EsmModel, PyTorch CPU {mode} (esm2_t12_35M random)", seqs, seconds,
           threads=args.threads, toks_per_batch=args.toks_per_batch, torch=torch.__version__, mode=mode)


if __name__ == "__main__":
    main()
