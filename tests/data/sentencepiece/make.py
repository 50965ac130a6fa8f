"""Makes the SentencePiece test data: two models trained with Python's `sentencepiece` on the
bundled German-English pairs (unigram and BPE, the default nmt_nfkc normalization, as
OPUS-MT's source.spm and target.spm are made), and for each model the ids and the decoded text
that `sentencepiece` gives for every line of lines.txt. wgformer's tokenizer must give the same
(tests/cpu/sentencepiece.rs).

    python tests/data/sentencepiece/make.py     # needs: pip install sentencepiece
"""
import json
import os

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "..", "data", "de-en")


def pairs(split):
    with open(os.path.join(DATA, f"{split}.tsv"), encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f if "\t" in line]


# Lines that exercise normalization and unknown characters, beside the test pairs.
SPECIAL = [
    "",
    " ",
    "   leading and trailing spaces   ",
    "tabs\tand\u3000ideographic  spaces",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ and ﬁ ligatures",
    "Straße, Größe, Äpfel und Öl",
    "combining: e\u0301 a\u0308 o\u0308",
    "unknown: 漢字 ✓ 🙂 ∮ ℵ",
    "control\u0007chars\u200band zero\u200dwidth",
    "<s> </s> <unk> look like pieces",
    "ALL CAPS SENTENCE WITH NUMBERS 1234567890",
    "punctuation!!! ??? ... --- (brackets) [more] {braces}",
    "ｶﾀｶﾅ half-width katakana",
    "\u00a0non-breaking\u00a0spaces\u00a0",
]


def main():
    train = pairs("train")
    text = os.path.join(HERE, "train.txt")
    with open(text, "w", encoding="utf-8") as f:
        for de, en in train[:8000]:
            f.write(de + "\n" + en + "\n")
    lines = SPECIAL[:]
    for de, en in pairs("test") + pairs("valid"):
        lines += [de, en]
    with open(os.path.join(HERE, "lines.txt"), "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    for kind, size in [("unigram", 2000), ("bpe", 1000)]:
        prefix = os.path.join(HERE, kind)
        spm.SentencePieceTrainer.train(
            input=text, model_prefix=prefix, vocab_size=size, model_type=kind,
            character_coverage=0.9995, seed_sentencepiece_size=100000, num_threads=2,
        )
        os.remove(prefix + ".vocab")
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
        with open(prefix + ".expected.jsonl", "w", encoding="utf-8") as f:
            for line in lines:
                ids = sp.encode(line)
                f.write(json.dumps({"ids": ids, "decoded": sp.decode(ids)}, ensure_ascii=False) + "\n")
    os.remove(text)


if __name__ == "__main__":
    main()
