"""Marian decoding speed at opus-mt-de-en's shapes (6+6 layers, d_model 512, 8 heads, FFN 2048,
vocabulary 58,101; random weights): transformers' `generate` on PyTorch (CPU, or CUDA where
there is a GPU), greedy and beam 4, one sentence and 32 at a time, at most 64 new tokens. Writes
the model as a Hugging Face Marian directory (tokenizer files from tests/golden/marian-s0, the
vocabulary padded to the full size) for the same measurement with wgformer:

    python benches/marian_reference.py OUT_DIR      # needs torch, transformers, sentencepiece
    cargo run --release --example marian_throughput -- OUT_DIR

Prints a markdown table of sentences per second.
"""
import json
import os
import shutil
import sys
import time

import torch
from transformers import MarianConfig, MarianMTModel, MarianTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
CASE = os.path.join(HERE, "..", "tests", "golden", "marian-s0")
VOCAB = 58101
SENTENCES = [line.split("\t")[0] for line in open(os.path.join(HERE, "..", "data", "de-en", "test.tsv"), encoding="utf-8")][:32]


def make(out):
    os.makedirs(out, exist_ok=True)
    for f in ["source.spm", "target.spm"]:
        shutil.copy(os.path.join(CASE, f), out)
    vocab = json.load(open(os.path.join(CASE, "vocab.json"), encoding="utf-8"))
    del vocab["<pad>"]
    for i in range(len(vocab), VOCAB - 1):
        vocab[f"<extra_{i}>"] = i
    vocab["<pad>"] = VOCAB - 1
    json.dump(vocab, open(os.path.join(out, "vocab.json"), "w", encoding="utf-8"), ensure_ascii=False)
    config = MarianConfig(vocab_size=VOCAB, decoder_vocab_size=VOCAB, d_model=512, encoder_layers=6, decoder_layers=6,
                          encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=2048,
                          decoder_ffn_dim=2048, activation_function="swish", scale_embedding=True,
                          pad_token_id=VOCAB - 1, decoder_start_token_id=VOCAB - 1, eos_token_id=0,
                          forced_eos_token_id=0, bad_words_ids=[[VOCAB - 1]], num_beams=4, max_length=65)
    torch.manual_seed(0)
    model = MarianMTModel(config).eval()
    model.generation_config.max_length = 65
    model.generation_config.num_beams = 4
    model.generation_config.bad_words_ids = [[VOCAB - 1]]
    model.save_pretrained(out)
    return model, MarianTokenizer(os.path.join(out, "source.spm"), os.path.join(out, "target.spm"), os.path.join(out, "vocab.json"))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/opus-mt-shape"
    model, tok = make(out)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device)
    print(f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, {device}, {torch.get_num_threads()} threads")
    with torch.no_grad():  # warm up outside the timings
        model.generate(**tok(SENTENCES[:1], return_tensors="pt").to(device), num_beams=4, max_length=65)
    print("| search | sentences a call | sentences | seconds | sentences/s |")
    print("| --- | --- | --- | --- | --- |")
    for name, beams in [("greedy", 1), ("beam 4", 4)]:
        for per_call in [1, 32]:
            n = 4 if per_call == 1 else 32
            start = time.perf_counter()
            for i in range(0, n, per_call):
                batch = tok(SENTENCES[i:i + per_call], padding=True, return_tensors="pt").to(device)
                with torch.no_grad():
                    model.generate(**batch, num_beams=beams, max_length=65, do_sample=False)
            secs = time.perf_counter() - start
            print(f"| {name} | {per_call} | {n} | {secs:.1f} | {n / secs:.2f} |")


if __name__ == "__main__":
    main()
