# PyTorch's training steps for the side-by-side figures of benches/gpu-check.sh: the same
# models, batches and optimizer as `wgformer bench step`, in eager PyTorch on CUDA.
#   vit-base b8:          torchvision's ViT-B/16, 224x224 random images, 1000 classes
#   transformer-base b128: nn.Transformer (512, 8 heads, 6+6 layers, FFN 2048, dropout 0.1),
#                          tied 37000-token embeddings, 32 tokens a side, label smoothing 0.1
# Each step: forward, backward, clipping at 1.0, AdamW (weight decay 0.05). Precision fp32 (TF32
# off, as wgformer computes in full fp32), tf32 (fp32 with TF32 products) and, for the
# mixed-precision issue, autocast bf16/fp16.
# Prints one JSON object per line: {"model", "batch", "precision", "median_ms"}.
#   python3 benches/torch_steps.py [RUNS]
import json, math, statistics, sys, time
import torch, torch.nn as nn, torch.nn.functional as F

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dev = "cuda"


class Translator(nn.Module):
    def __init__(self, vocab=37000, d=512, heads=8, layers=6, ff=2048, drop=0.1):
        super().__init__()
        self.d = d
        self.emb = nn.Embedding(vocab, d)
        self.core = nn.Transformer(d, heads, layers, layers, ff, drop, batch_first=True)
        pos = torch.arange(64).unsqueeze(1) * torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
        pe = torch.zeros(64, d)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos), torch.cos(pos)
        self.register_buffer("pe", pe)

    def forward(self, src, tgt):
        e = lambda x: self.emb(x) * math.sqrt(self.d) + self.pe[: x.shape[1]]
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], device=tgt.device)
        y = self.core(e(src), e(tgt), tgt_mask=mask, tgt_is_causal=True)
        return y @ self.emb.weight.t()


def vit_case(batch):
    import torchvision
    model = torchvision.models.vit_b_16(weights=None).to(dev)
    x = torch.randn(batch, 3, 224, 224, device=dev)
    y = torch.randint(0, 1000, (batch,), device=dev)
    return model, lambda: F.cross_entropy(model(x), y)


def transformer_case(batch):
    model = Translator().to(dev)
    src, tgt_in, tgt_out = (torch.randint(4, 37000, (batch, 32), device=dev) for _ in range(3))
    return model, lambda: F.cross_entropy(model(src, tgt_in).flatten(0, 1), tgt_out.flatten(), label_smoothing=0.1)


def time_steps(model, loss_fn, precision):
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(enabled=precision == "fp16")
    model.train()
    times = []
    for step in range(RUNS + 3):
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        torch.cuda.synchronize()
        if step >= 3:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


for name, batch, make in [("vit-base", 8, vit_case), ("transformer-base", 128, transformer_case)]:
    for precision in ["fp32", "tf32", "bf16", "fp16"]:
        torch.manual_seed(0)
        model, loss_fn = make(batch)
        ms = time_steps(model, loss_fn, precision)
        print(json.dumps({"model": name, "batch": batch, "precision": precision, "median_ms": round(ms, 3)}), flush=True)
        del model
        torch.cuda.empty_cache()
