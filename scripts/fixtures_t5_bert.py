#!/usr/bin/env python3
"""Parity fixtures for protfam's T5 (ProtT5) and BERT (ProtBert) embedders.

Makes tiny random-weight models in the exact Hugging Face layouts of the
Rostlab checkpoints, and reference outputs computed with HF transformers for
ten real domains from the bundled Pfam split:

  tests/data/t5_tiny_full/   T5ForConditionalGeneration, pytorch_model.bin (like
                             Rostlab/prot_t5_xl_uniref50), feed_forward_proj relu,
                             SentencePiece spiece.model with ProtT5's piece ids
  tests/data/t5_tiny_enc/    T5EncoderModel saved in float16 as model.safetensors
                             (like Rostlab/prot_t5_xl_half_uniref50-enc), gated-gelu,
                             tokenizer.json written by HF's T5Tokenizer
  tests/data/bert_tiny_mlm/  BertForMaskedLM, pytorch_model.bin (`bert.` prefix, like
                             Rostlab/prot_bert_bfd), ProtBert vocab.txt
  tests/data/bert_tiny_base/ BertModel (no prefix, with pooler), model.safetensors

Each directory gets `reference.safetensors`: for sequence i, `seq{i}.ids`
(token ids from the HF tokenizer), `seq{i}.last` and `seq{i}.layer1`
(per-residue hidden states, final and after the first layer, special tokens
removed), `seq{i}.pooled` (mean of `last`), computed one sequence at a time
without padding; `probe{j}.ids` tokenizes edge-case strings; the metadata holds
the sequences and probes as JSON. T5 directories also get `buckets` (HF's
relative position bucket for -600..600).

Needs: torch, transformers, sentencepiece, protobuf, safetensors.
Run from the repository root: python3 scripts/fixtures_t5_bert.py
"""

import csv
import json
import os
import re
import struct
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data"

PROBES = ["MUZOBXJ", "ACDEFGHIKLMNPQRSTVWY", "BBJJXXOU", "W"]


def data_dir() -> Path:
    env = os.environ.get("PROTFAM_DATA")
    candidates = [Path(env)] if env else []
    candidates += [ROOT.parent / "shared/data/pfam35-uniprot20k", ROOT / "data/pfam35-uniprot20k"]
    for c in candidates:
        if c.is_dir():
            return c
    sys.exit("Pfam data not found: set PROTFAM_DATA")


def pick_sequences() -> list[tuple[str, str]]:
    """Ten real test domains of spread lengths (13..~400), including one with X."""
    path = data_dir() / "clustered_split/test/data-00000-of-00004"
    with open(path, newline="") as f:
        rows = [(r["sequence_name"], r["sequence"]) for r in csv.DictReader(f)]
    rows = [r for r in rows if len(r[1]) <= 400]
    rows.sort(key=lambda r: (len(r[1]), r[0]))
    picks = [rows[round(q * (len(rows) - 1))] for q in (0.0, 0.12, 0.25, 0.37, 0.5, 0.62, 0.75, 0.87, 1.0)]
    with_x = [r for r in rows if any(c in r[1] for c in "UZOBX") and r not in picks]
    picks.append(with_x[0])
    return picks


# --- SentencePiece model with Rostlab's ProtT5 piece order -------------------------------

PROT_T5_PIECES = ["<pad>", "</s>", "<unk>"] + ["\u2581" + c for c in "ALGVSREDTIPKFQNYMHWCXBOUZ"]


def _varint(n: int) -> bytes:
    n &= 0xFFFFFFFFFFFFFFFF
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _field_float(number: int, value: float) -> bytes:
    return _varint(number << 3 | 5) + struct.pack("<f", value)


def write_spiece_model(path: Path) -> None:
    """A unigram ModelProto: <pad>=0 </s>=1 <unk>=2 then ▁A ▁L ▁G ... as in Rostlab's spiece.model."""
    body = b""
    for i, piece in enumerate(PROT_T5_PIECES):
        kind = 3 if piece in ("<pad>", "</s>") else 2 if piece == "<unk>" else 1
        score = 0.0 if kind != 1 else -float(i)
        body += _field_bytes(1, _field_bytes(1, piece.encode()) + _field_float(2, score) + _field_varint(3, kind))
    trainer = (_field_varint(3, 1) + _field_varint(4, len(PROT_T5_PIECES)) + _field_varint(40, 2)
               + _field_varint(41, -1) + _field_varint(42, 1) + _field_varint(43, 0))
    body += _field_bytes(2, trainer)
    normalizer = _field_bytes(1, b"identity") + _field_varint(3, 1) + _field_varint(4, 1) + _field_varint(5, 1)
    body += _field_bytes(3, normalizer)
    path.write_bytes(body)


def prot_trans_text(seq: str) -> str:
    """ProtTrans' preprocessing: rare residues to X, residues space-separated."""
    return " ".join(re.sub(r"[UZOB]", "X", seq))


# --- reference outputs --------------------------------------------------------------------

def reference(model, tokenizer, seqs, probes, lead: int, tail: int, extra=None) -> dict:
    """Per-sequence outputs without padding; `lead`/`tail` special tokens are cut off."""
    tensors = {}
    for i, (_, seq) in enumerate(seqs):
        ids = tokenizer(prot_trans_text(seq), add_special_tokens=True)["input_ids"]
        assert len(ids) == len(seq) + lead + tail, (seq, ids)
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
        states = out.hidden_states
        last = states[-1][0, lead:lead + len(seq)].float().contiguous()
        tensors[f"seq{i}.ids"] = torch.tensor(ids, dtype=torch.int64)
        tensors[f"seq{i}.last"] = last
        tensors[f"seq{i}.layer1"] = states[1][0, lead:lead + len(seq)].float().contiguous()
        tensors[f"seq{i}.pooled"] = last.mean(0).contiguous()
    for j, probe in enumerate(probes):
        tensors[f"probe{j}.ids"] = torch.tensor(tokenizer(prot_trans_text(probe))["input_ids"], dtype=torch.int64)
    if extra:
        tensors.update(extra)
    return tensors


def save_reference(directory: Path, tensors: dict, seqs, probes) -> None:
    metadata = {
        "sequences": json.dumps([s for _, s in seqs]),
        "names": json.dumps([n for n, _ in seqs]),
        "probes": json.dumps(probes),
        "made_by": "scripts/fixtures_t5_bert.py",
    }
    save_file(tensors, str(directory / "reference.safetensors"), metadata=metadata)


def check_batch_invariance(model, tokenizer, seqs, tensors, lead: int) -> None:
    """The reference itself must not depend on padding (sanity check of HF's masking)."""
    texts = [prot_trans_text(s) for _, s in seqs]
    enc = tokenizer(texts, padding="longest", return_tensors="pt")
    with torch.no_grad():
        out = model(**enc).last_hidden_state
    for i, (_, seq) in enumerate(seqs):
        diff = (out[i, lead:lead + len(seq)].float() - tensors[f"seq{i}.last"]).abs().max().item()
        assert diff < 1e-4, diff


def make_t5(seqs) -> None:
    from transformers import T5Config, T5EncoderModel, T5ForConditionalGeneration, T5Tokenizer

    buckets_rel = torch.arange(-600, 601)
    from transformers.models.t5.modeling_t5 import T5Attention
    buckets = T5Attention._relative_position_bucket(buckets_rel, True, 32, 128).to(torch.int64)

    for name, proj, full, half in [("t5_tiny_full", "relu", True, False), ("t5_tiny_enc", "gated-gelu", False, True)]:
        d = OUT / name
        d.mkdir(parents=True, exist_ok=True)
        for stale in d.iterdir():
            stale.unlink()
        cfg = T5Config(
            vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=1, num_heads=4,
            relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj=proj,
            layer_norm_epsilon=1e-6, dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        )
        cfg._attn_implementation = "eager"
        torch.manual_seed(3 if full else 4)
        model = (T5ForConditionalGeneration if full else T5EncoderModel)(cfg).eval()
        with torch.no_grad():
            # Strong position biases and non-trivial norms so mistakes show up in the outputs.
            bias = model.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight
            bias.normal_(0.0, 1.0)
            for block in model.encoder.block:
                for layer in block.layer:
                    layer.layer_norm.weight.uniform_(0.5, 1.5)
            model.encoder.final_layer_norm.weight.uniform_(0.5, 1.5)
        if half:
            model = model.half()
            save_file({k: v.contiguous() for k, v in model.state_dict().items()
                       if k != "encoder.embed_tokens.weight"}, str(d / "model.safetensors"), metadata={"format": "pt"})
            model = model.float()  # what users do on CPU: compute in f32 from the f16 weights
        else:
            torch.save(model.state_dict(), d / "pytorch_model.bin")
        cfg.save_pretrained(d)

        spiece = d / "spiece.model"
        write_spiece_model(spiece)
        tokenizer = T5Tokenizer.from_pretrained(str(d))
        if half:
            # The encoder-only fixture carries the fast-tokenizer file instead.
            spiece.unlink()
            tokenizer.save_pretrained(str(d))
            for extra in ("tokenizer_config.json", "special_tokens_map.json"):
                (d / extra).unlink(missing_ok=True)
            tokenizer = T5Tokenizer.from_pretrained(str(d))
        tensors = reference(model.get_encoder() if full else model, tokenizer, seqs, PROBES, lead=0, tail=1,
                            extra={"buckets": buckets, "buckets_relative": buckets_rel.to(torch.int64)})
        check_batch_invariance(model.get_encoder() if full else model, tokenizer, seqs, tensors, lead=0)
        save_reference(d, tensors, seqs, PROBES)
        print(f"wrote {d}")


PROT_BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("LAGVESIKRDTPNQFYMHCWXUBZO")


def make_bert(seqs) -> None:
    from transformers import BertConfig, BertForMaskedLM, BertModel, BertTokenizer

    for name, mlm in [("bert_tiny_mlm", True), ("bert_tiny_base", False)]:
        d = OUT / name
        d.mkdir(parents=True, exist_ok=True)
        for stale in d.iterdir():
            stale.unlink()
        cfg = BertConfig(
            vocab_size=30, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            hidden_act="gelu", max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.3, pad_token_id=0,
        )
        cfg._attn_implementation = "eager"
        torch.manual_seed(5 if mlm else 6)
        model = (BertForMaskedLM if mlm else BertModel)(cfg).eval()
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.LayerNorm):
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.normal_(0.0, 0.1)
        if mlm:
            torch.save(model.state_dict(), d / "pytorch_model.bin")
        else:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "model.safetensors"),
                      metadata={"format": "pt"})
        cfg.save_pretrained(d)
        (d / "vocab.txt").write_text("".join(t + "\n" for t in PROT_BERT_VOCAB))
        (d / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}) + "\n")
        # transformers 5 ignores a bare vocab_file argument: load the directory as users do.
        tokenizer = BertTokenizer.from_pretrained(str(d))
        assert tokenizer("A L")["input_ids"] == [2, 6, 5, 3], tokenizer("A L")["input_ids"]
        encoder = model.bert if mlm else model
        tensors = reference(encoder, tokenizer, seqs, PROBES, lead=1, tail=1)
        check_batch_invariance(encoder, tokenizer, seqs, tensors, lead=1)
        save_reference(d, tensors, seqs, PROBES)
        print(f"wrote {d}")


def main() -> None:
    torch.set_num_threads(1)
    seqs = pick_sequences()
    print("sequences:", [(n, len(s)) for n, s in seqs])
    make_t5(seqs)
    make_bert(seqs)


if __name__ == "__main__":
    main()
