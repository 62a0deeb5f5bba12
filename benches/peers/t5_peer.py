#!/usr/bin/env python3
"""Benchmark peer for ProtT5: Hugging Face transformers' `T5EncoderModel` on PyTorch
CPU with ProtT5-XL's block shape (d_model 1024, d_ff 16384, 32 heads of 128,
ReLU feed-forward, relative position buckets 32/128) and seeded random weights,
`--layers` of ProtT5-XL's 24 blocks (speed per block does not depend on the
values, and per-residue cost is linear in the blocks), on the first N domains of
the bundled clustered test split, in length-sorted batches of up to
`--toks-per-batch` padded tokens. ProtT5's input: one `▁X` piece per residue,
then `</s>`; the pooled vector is the mean of the last hidden state over the
residues.

`--save-model DIR` writes the model in the Hugging Face layout (`config.json`,
`model.safetensors`) so that protfam's bench loads the very same weights;
`--bf16` runs under `torch.autocast("cpu", dtype=torch.bfloat16)`;
`--save-pooled FILE` writes the pooled vectors as raw little-endian f32,
N x 1024, in input order. Prints one JSON line: residues/s and peak RSS.

Usage: python3 benches/peers/t5_peer.py [--n 24] [--layers 4] [--save-model DIR] [--bf16]
       [--save-pooled FILE] [--threads 2]
"""
import json
from pathlib import Path

from _common import (data_root, embed_timed, length_sorted_batches, load_sequences, report, save_pooled,
                     torch_peer_arguments)

# ProtT5's SentencePiece pieces in id order (before the 100 <extra_id_*> sentinels).
PIECES = ["<pad>", "</s>", "<unk>"] + ["\u2581" + c for c in "ALGVSREDTIPKFQNYMHWCXBOUZ"]


def xl_shaped_config(layers: int) -> dict:
    return dict(vocab_size=128, d_model=1024, d_kv=128, d_ff=16384, num_layers=layers, num_heads=32,
                relative_attention_num_buckets=32, relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
                feed_forward_proj="relu", dropout_rate=0.0, is_encoder_decoder=False, pad_token_id=0,
                eos_token_id=1, model_type="t5")


def main():
    ap = torch_peer_arguments(24)
    ap.add_argument("--layers", type=int, default=4)
    args = ap.parse_args()
    seqs = load_sequences(data_root(args.data), args.n, args.split)

    import torch
    from transformers import T5Config, T5EncoderModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = xl_shaped_config(args.layers)
    model = T5EncoderModel(T5Config(**{k: v for k, v in config.items() if k != "model_type"}))
    model.eval()
    if args.save_model:
        out = Path(args.save_model)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out, safe_serialization=True)
        # The config as ProtT5's own: model_type t5, encoder only.
        saved = json.loads((out / "config.json").read_text())
        saved.update(config)
        (out / "config.json").write_text(json.dumps(saved, indent=2))
    index = {p: i for i, p in enumerate(PIECES)}

    def encode(batch):
        width = max(len(seqs[i]) for i in batch) + 1
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            toks = [index.get("\u2581" + c, index["<unk>"]) for c in seqs[i]] + [index["</s>"]]
            ids[row, : len(toks)] = torch.tensor(toks)
            mask[row, : len(toks)] = 1
        return ids, mask

    batches = length_sorted_batches(seqs, args.toks_per_batch, 1)  # residues, then </s>
    pooled, seconds = embed_timed(model, seqs, batches, encode, 0, args.bf16)
    if args.save_pooled:
        save_pooled(pooled, args.save_pooled)
    mode = "autocast bf16" if args.bf16 else "f32"
    report(f"transformers T5EncoderModel, PyTorch CPU {mode} (ProtT5-XL-shaped, {args.layers} blocks, random)",
           seqs, seconds, threads=args.threads, toks_per_batch=args.toks_per_batch, torch=torch.__version__, mode=mode)


if __name__ == "__main__":
    main()
