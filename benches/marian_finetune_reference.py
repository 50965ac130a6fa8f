"""A Marian fine-tuning step at opus-mt-de-en's shapes (random weights; the model directory that
benches/marian_reference.py writes): PyTorch's training steps (Adam, fp32, on this machine's CPU
or a GPU) on the bundled dictionary pairs, batches of about 512 target tokens as
`wgformer train translate --init` takes them by default. Prints seconds a step and target
tokens a second; the same steps with wgformer:

    python benches/marian_reference.py /tmp/opus-mt-shape       # once: writes the model
    python benches/marian_finetune_reference.py /tmp/opus-mt-shape
    wgformer train translate --init /tmp/opus-mt-shape --data DIR --epochs 1 --valid-pairs 1 --test-pairs 1
"""
import os
import sys
import time

import torch
from transformers import MarianMTModel, MarianTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
PAIRS = [line.rstrip("\n").split("\t") for line in open(os.path.join(HERE, "..", "data", "de-en", "train.tsv"), encoding="utf-8")]


def main():
    model_dir = sys.argv[1] if len(sys.argv) > 1 else "/tmp/opus-mt-shape"
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 6
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = MarianTokenizer.from_pretrained(model_dir)
    model = MarianMTModel.from_pretrained(model_dir).to(device).train()
    opt = torch.optim.Adam([p for n, p in model.named_parameters() if "embed_positions" not in n], lr=5e-5,
                           betas=(0.9, 0.98), eps=1e-9)
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads")
    times, tokens = [], []
    for step in range(steps + 1):
        rows = PAIRS[step * 32:(step + 1) * 32]  # about 16 tokens each: ~512 padded target tokens
        batch = tok([s for s, _ in rows], text_target=[t for _, t in rows], padding=True, return_tensors="pt").to(device)
        batch["labels"] = batch["labels"].masked_fill(batch["labels"] == tok.pad_token_id, -100)
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if step > 0:  # the first step warms up
            times.append(time.perf_counter() - start)
            tokens.append(int((batch["labels"] != -100).sum()))
    secs = sum(times) / len(times)
    print(f"{len(times)} steps: {secs:.2f} s a step, {sum(tokens) / sum(times):.0f} target tokens/s "
          f"({batch['labels'].shape[0]} rows x {batch['labels'].shape[1]} padded target tokens in the last)")


if __name__ == "__main__":
    main()
