# torch.matmul at the shapes `wgformer bench matmul` times, for the side-by-side figures of
# benches/gpu-check.sh: fp32 with TF32 off (as wgformer computes) and on. A shape is MxNxK, or
# MxNxK TN for op(A) = A^T (A stored K x M, as a weight gradient's dY). Prints one JSON object
# per line: {"shape", "tf32", "median_ms", "tflops"}. On a machine without CUDA it runs on the
# CPU (to try the script; those figures mean nothing for the GPU table).
#   python3 benches/torch_matmul.py RUNS SHAPE...
import json, statistics, sys, time
import torch

runs = int(sys.argv[1])
dev = "cuda" if torch.cuda.is_available() else "cpu"


def sync():
    if dev == "cuda":
        torch.cuda.synchronize()


def operands(label):
    dims, _, trans = label.partition(" ")
    m, n, k = (int(x) for x in dims.split("x"))
    a = torch.randn(k, m, device=dev) if trans == "TN" else torch.randn(m, k, device=dev)
    b = torch.randn(k, n, device=dev)
    return (a.t() if trans == "TN" else a), b, 2.0 * m * n * k


for label in sys.argv[2:]:
    a, b, flops = operands(label)
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        out = torch.empty(a.shape[0], b.shape[1], device=dev)
        for _ in range(3):
            torch.matmul(a, b, out=out)
        times = []
        for _ in range(runs):
            sync()
            start = time.perf_counter()
            torch.matmul(a, b, out=out)
            sync()
            times.append((time.perf_counter() - start) * 1e3)
        ms = statistics.median(times)
        print(json.dumps({"shape": label, "tf32": tf32, "median_ms": round(ms, 4), "tflops": round(flops / ms / 1e9, 2)}),
              flush=True)
