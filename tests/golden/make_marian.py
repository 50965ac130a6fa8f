"""Makes the Marian reference case tests/golden/marian-s0: a MarianMTModel (transformers) with
seeded random weights, every tensor perturbed (LayerNorm weights away from 1, biases and
final_logits_bias non-zero), then trained briefly on the case's three pairs (so that `generate`
gives their translations, not one token repeated), saved as a Hugging Face Marian directory (config.json,
generation_config.json, model.safetensors, source.spm, target.spm, vocab.json, made here from
the bundled German-English pairs with `sentencepiece`), with one forward and backward pass in
float64 (inputs.safetensors, expected.safetensors: logits, loss, grad.<name>) and the ids
`generate` gives, greedy and beam 4 (generate.json).

A second case, marian-v58k, has OPUS-MT's full vocabulary of 58,101 (the same tokenizer, its
vocab.json padded with unused entries as a model trained on more text would have them) at
d_model 16 with 1+1 layers, so that the kernels meet logits and embedding tables as wide as a
published model's while the committed files stay small (no pytorch_model.bin, no tokenizer cases).

    pip install torch transformers sentencepiece safetensors
    python tests/golden/make_marian.py
"""
import io
import json
import os
import sys

import sentencepiece as spm
import torch
from safetensors.torch import save_file
from transformers import MarianConfig, MarianMTModel, MarianTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "marian-s0")
OPUS_VOCAB = 58101
DATA = os.path.join(HERE, "..", "..", "data", "de-en", "train.tsv")
SOURCES = ["Das ist ein Haus.", "Guten Morgen, wie geht es dir heute?", "Ich habe keine Zeit."]
TARGETS = ["That is a house.", "Good morning, how are you today?", "I have no time."]
# Generation also runs on sentences the model never saw, where beam search and greedy differ.
UNSEEN = ["Das ist keine Zeit.", "Guten Tag, wie geht es?", "Ich habe ein Haus."]


def train_spm(lines, path):
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, vocab_size=400,
                                   model_type="unigram", character_coverage=1.0, minloglevel=2)
    with open(path, "wb") as f:
        f.write(model.getvalue())
    return spm.SentencePieceProcessor(model_file=path)


def vocabulary(source, target, size=None):
    """Marian's joint vocab.json: </s> 0, <unk> 1, the pieces of both models, (unused entries up
    to `size`,) <pad> last."""
    vocab = {"</s>": 0, "<unk>": 1}
    for sp in (source, target):
        for i in range(sp.get_piece_size()):
            piece = sp.id_to_piece(i)
            if piece not in vocab and piece not in ("<s>", "</s>", "<unk>"):
                vocab[piece] = len(vocab)
    while size is not None and len(vocab) < size - 1:
        vocab[f"<unused_{len(vocab)}>"] = len(vocab)
    vocab["<pad>"] = len(vocab)
    return vocab


def perturb(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_positions" in name:
                continue
            if name.endswith("layer_norm.weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=gen))
        model.final_logits_bias.copy_(0.1 * torch.randn(model.final_logits_bias.shape, generator=gen))


def memorise(model, batch, labels, steps):
    """Steps (forty) on the case's own pairs, so that `generate` gives real sentences
    (random weights only repeat one token) while the perturbed tensors stay far from defaults."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss.backward()
        opt.step()
    model.eval()


def tokenizer_cases(tok, out):
    """tokenizer.jsonl: for lines of tests/data/sentencepiece/lines.txt (odd ones included) and a
    few with special tokens and language codes, the source ids, the target-side ids and both
    decodings of the target ids (special tokens skipped, and kept). Made without sacremoses:
    MarianTokenizer then leaves punctuation as it is."""
    path = os.path.join(HERE, "..", "data", "sentencepiece", "lines.txt")
    lines = [json.loads(line) for line in open(path, encoding="utf-8")][:600]
    lines += ["a </s> b", "<unk> at the start", ">>de<< Guten Tag", "pad <pad> inside", "ends with </s>"]
    with open(os.path.join(out, "tokenizer.jsonl"), "w", encoding="utf-8") as f:
        for line in lines:
            ids = tok(line)["input_ids"]
            target = tok(text_target=line)["input_ids"]
            f.write(json.dumps({
                "text": line, "ids": ids, "target_ids": target,
                "decoded": tok.decode(target, skip_special_tokens=True), "decoded_special": tok.decode(target),
            }, ensure_ascii=False) + "\n")


def make_case(out, d_model, layers, ffn, heads, vocab_size=None, extras=True, checked=(0, 1, 2), memorise_steps=40):
    os.makedirs(out, exist_ok=True)
    pairs = [line.rstrip("\n").split("\t") for line in open(DATA, encoding="utf-8") if "\t" in line][:6000]
    source = train_spm([de for de, _ in pairs], os.path.join(out, "source.spm"))
    target = train_spm([en for _, en in pairs], os.path.join(out, "target.spm"))
    vocab = vocabulary(source, target, vocab_size)
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, indent=1)
    pad = vocab["<pad>"]
    config = MarianConfig(
        vocab_size=len(vocab), decoder_vocab_size=len(vocab), d_model=d_model, encoder_layers=layers,
        decoder_layers=layers, encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn, activation_function="swish", max_position_embeddings=64, scale_embedding=True,
        pad_token_id=pad, decoder_start_token_id=pad, eos_token_id=0, forced_eos_token_id=0, dropout=0.1,
        bad_words_ids=[[pad]], num_beams=4, max_length=512,
    )
    torch.manual_seed(0)
    model = MarianMTModel(config)
    perturb(model, torch.Generator().manual_seed(1))
    model.generation_config.bad_words_ids = [[pad]]
    model.generation_config.num_beams = 4
    model.generation_config.max_length = 512
    tok = MarianTokenizer(os.path.join(out, "source.spm"), os.path.join(out, "target.spm"), os.path.join(out, "vocab.json"))
    tok.save_pretrained(out)

    batch = tok(SOURCES, text_target=TARGETS, padding=True, return_tensors="pt")
    labels = batch["labels"].masked_fill(batch["labels"] == pad, -100)
    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels=labels)
    memorise(model, batch, labels, memorise_steps)
    model.save_pretrained(out)
    if extras:
        # The same weights as many published OPUS-MT repositories ship them (a torch.save pickle).
        torch.save(model.state_dict(), os.path.join(out, "pytorch_model.bin"))
    # The forward and backward pass scores other targets (the pairs' translations rotated),
    # so that the loss and the gradients are far from zero.
    # `checked`: which pairs (the full vocabulary's case keeps its logits small with two).
    sources, targets = [SOURCES[i] for i in checked], [TARGETS[i] for i in checked]
    batch = tok(sources, text_target=targets[1:] + targets[:1], padding=True, return_tensors="pt")
    labels = batch["labels"].masked_fill(batch["labels"] == pad, -100)
    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels=labels)
    model64 = model.double().train(False)
    model64.zero_grad(set_to_none=True)  # memorise() left its last step's gradients
    result = model64(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  decoder_input_ids=decoder_input_ids, labels=labels)
    result.loss.backward()
    expected = {"logits": result.logits.float(), "loss": result.loss.float().reshape(())}
    for name, p in model64.named_parameters():
        if p.grad is not None:
            expected[f"grad.{name}"] = p.grad.float().contiguous()
    save_file(expected, os.path.join(out, "expected.safetensors"))
    save_file({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
               "decoder_input_ids": decoder_input_ids, "labels": labels}, os.path.join(out, "inputs.safetensors"))

    generated = {}
    sources = SOURCES + UNSEEN
    batch = tok(sources, padding=True, return_tensors="pt")
    with torch.no_grad():
        for name, beams in [("greedy", 1), ("beam4", 4)]:
            ids = model64.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   num_beams=beams, max_new_tokens=24, do_sample=False)
            generated[name] = ids.tolist()
        # Greedy steps decided by a margin under 1e-3 would make the comparison flaky.
        scores = model64.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], num_beams=1,
                                  max_new_tokens=24, do_sample=False, output_scores=True,
                                  return_dict_in_generate=True).scores
        margins = [min(float(s[i].topk(2).values[0] - s[i].topk(2).values[1]) for s in scores) for i in range(len(sources))]
    generated["greedy_margin"] = margins
    generated["sources"] = sources
    with open(os.path.join(out, "generate.json"), "w") as f:
        json.dump(generated, f, indent=1)
    if extras:
        tokenizer_cases(tok, out)
    print(out, "margins", margins, "loss", float(result.loss))




# Cases too large to commit, made where torch is installed and checked with `wgformer verify`
# (see docs/guide.md): opus-mt-de-en's full shape (74M parameters), and d_model 512 with 1+1
# layers at the small vocabulary. No memorising steps (too slow at these sizes on a CPU).
ON_THE_FLY = {
    "opus-shape": dict(d_model=512, layers=6, ffn=2048, heads=8, vocab_size=OPUS_VOCAB),
    "d512": dict(d_model=512, layers=1, ffn=2048, heads=8),
}


def main():
    """Makes both committed cases, or those named on the command line (marian-s0, marian-v58k),
    or `--out DIR opus-shape|d512`: a case of ON_THE_FLY written to DIR."""
    if sys.argv[1:2] == ["--out"]:
        out, shape = sys.argv[2], sys.argv[3]
        make_case(out, extras=False, checked=(0, 2), memorise_steps=0, **ON_THE_FLY[shape])
        return
    wanted = sys.argv[1:] or ["marian-s0", "marian-v58k"]
    if "marian-s0" in wanted:
        make_case(OUT, d_model=32, layers=2, ffn=64, heads=4)
    if "marian-v58k" in wanted:
        make_case(os.path.join(HERE, "marian-v58k"), d_model=16, layers=1, ffn=32, heads=2, vocab_size=OPUS_VOCAB,
                  extras=False, checked=(0, 2))


if __name__ == "__main__":
    main()
