# The table of benches/gpu-check.sh: reads its results folder, prints one table (adapter, test
# suites, matmul, attention, training steps side by side with PyTorch) and writes summary.json.
#   python3 benches/gpu_check_report.py OUT
import json, os, sys

out = sys.argv[1]


def load(name, default):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


summary = {"info": load("info.json", {}), "tests": [], "benches": {}, "torch": []}
lines = []
chosen = summary["info"].get("chosen", {})
lines.append(f"adapter: {chosen.get('name', '?')} ({chosen.get('backend', '?')}, {chosen.get('device_type', '?')}), "
             f"driver {chosen.get('driver', '?')} {chosen.get('driver_info', '')}")
lines.append(f"attention: {summary['info'].get('attention', '?')}")
lines.append(f"kernel choices: {summary['info'].get('tuning', '?')}")
# What the measured choices picked in this check (gpu-check.sh keeps them in OUT/tuning.json).
picks = {}
for entries in load("tuning.json", {}).values():
    for key, pick in entries.items():
        family = key.split(" ", 1)[0]
        picks.setdefault(family, {}).setdefault(pick, 0)
        picks[family][pick] += 1
summary["tuning"] = picks
for family, counts in sorted(picks.items()):
    lines.append(f"  {family}: " + ", ".join(f"{n} classes {pick}" for pick, n in sorted(counts.items())))

lines.append("\ntest suites")
try:
    rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(out, "tests.tsv")) if l.strip()]
except OSError:
    rows = []
for backend in sorted({r[0] for r in rows}):
    mine = sorted((r for r in rows if r[0] == backend), key=lambda r: r[1])
    passed = sum(r[2] == "pass" for r in mine)
    lines.append(f"  {backend}: {passed} of {len(mine)} suites passed")
    for r in mine:
        summary["tests"].append({"backend": r[0], "suite": r[1], "result": r[2], "seconds": int(r[3]),
                                 "summary": r[4] if len(r) > 4 else ""})
        if r[2] != "pass":
            lines.append(f"    {r[1]}: {r[2]} after {r[3]} s  {r[4] if len(r) > 4 else ''}")

names = sorted(f[:-5] for f in os.listdir(out) if f.endswith(".json") and f not in ("info.json", "summary.json", "tuning.json"))
for name in names:
    summary["benches"][name] = load(name + ".json", [])


def rate(r):
    if r.get("gflops") is not None:
        return f"{r['gflops'] / 1e3:8.2f} TFLOP/s" if r["gflops"] >= 1e3 else f"{r['gflops']:8.1f} GFLOP/s"
    if r.get("gbps") is not None:
        return f"{r['gbps']:8.1f} GB/s"
    return ""


lines.append("\nkernels")
for name in [n for n in names if not n.startswith(("step-", "sweep-"))]:
    for r in summary["benches"][name]:
        note = f"  ({r['note']})" if r.get("note") else ""
        ms = f"{r['median_ms']:10.3f} ms" if r.get("median_ms") is not None else f"{'-':>13}"
        lines.append(f"  {r['kernel']:<28} {r['shape']:<26} {ms} {rate(r)}{note}")

try:
    summary["torch"] = [json.loads(l) for l in open(os.path.join(out, "torch.jsonl")) if l.strip()]
except (OSError, ValueError):
    pass
torch_ms = {(t["model"], t["batch"], t["precision"]): t["median_ms"] for t in summary["torch"]}

lines.append(
    "\ntraining steps (median ms; no fusion: WGFORMER_FUSION=0; fused / tiled: WGFORMER_ATTENTION_VARIANT=rows / tiled;"
    " f16: --precision f16;"
    " f16 once: and WGFORMER_F16_WEIGHT_CASTS=once)"
)
lines.append(
    f"  {'model':<26} {'default':>10} {'no fusion':>10} {'fused':>10} {'tiled':>10} {'f16':>10} {'f16 once':>10} {'GFLOP/s':>8}"
    f" {'torch fp32':>11} {'torch tf32':>11} {'torch bf16':>11} {'torch fp16':>11}"
)
variants = ("-nofusion", "-fused", "-tiled", "-f16", "-f16-once")
for name in [n for n in names if n.startswith("step-") and not n.endswith(variants)]:
    mine = summary["benches"][name]
    if not mine:
        lines.append(f"  {name[5:]:<26} failed (see {name}.log)")
        continue
    r = mine[0]
    if r.get("median_ms") is None:
        lines.append(f"  {r['shape']:<26} did not run: {r.get('note', '')}")
        continue
    model, batch = r["shape"].split(" batch ")
    def ms_of(suffix):
        r = summary["benches"].get(name + suffix, [])
        return f"{r[0]['median_ms']:10.1f}" if r and r[0].get("median_ms") is not None else f"{'-':>10}"

    f = " ".join(ms_of(v) for v in variants)
    theirs = [torch_ms.get((model, int(batch), p)) for p in ("fp32", "tf32", "bf16", "fp16")]
    fmt = lambda v: f"{v:11.1f}" if v is not None else f"{'-':>11}"
    lines.append(f"  {r['shape']:<26} {r['median_ms']:10.1f} {f} {r['gflops']:8.0f} " + " ".join(fmt(t) for t in theirs))

# The tiled matmul's sweep (blocks x split counts, gpu-check.sh) beside torch.matmul: per shape
# the default choice, the best of the sweep, and PyTorch fp32 with TF32 off and on.
try:
    summary["torch_matmul"] = [json.loads(l) for l in open(os.path.join(out, "torch-matmul.jsonl")) if l.strip()]
except (OSError, ValueError):
    summary["torch_matmul"] = []
torch_mm = {(t["shape"], t["tf32"]): t["median_ms"] for t in summary["torch_matmul"]}
sweeps = [n for n in names if n.startswith("sweep-")]
if sweeps or torch_mm:
    lines.append("\nmatmul sweep (median ms; best of the tiled sweep: block TMxTN, k per strip, buffers, splits; ratio: torch fp32 / ours)")
    lines.append(f"  {'shape':<20} {'default':>9} {'best sweep':>10} {'(config)':<17} {'torch fp32':>10} {'torch tf32':>10} {'ratio':>6}")
    for r in summary["benches"].get("matmul", []):
        shape, ours = r["shape"], r.get("median_ms")
        tried = [(s[0]["median_ms"], n[6:]) for n in sweeps for s in [[x for x in summary["benches"][n] if x["shape"] == shape]]
                 if s and s[0].get("median_ms") is not None]
        best = min(tried) if tried else (None, "-")
        t32, t_tf32 = torch_mm.get((shape, False)), torch_mm.get((shape, True))
        fmt = lambda v, w: f"{v:{w}.3f}" if v is not None else f"{'-':>{w}}"
        ratio = f"{t32 / ours:6.2f}" if t32 and ours else f"{'-':>6}"
        lines.append(f"  {shape:<20} {fmt(ours, 9)} {fmt(best[0], 10)} {best[1]:<17} {fmt(t32, 10)} {fmt(t_tf32, 10)} {ratio}")

try:
    log = open(os.path.join(out, "translate.log"), errors="replace").read().replace("\r", "\n").split("\n")
    keep = [l for l in log if l.startswith(("planned", "done:", "test BLEU", "the mean"))]
    rounds = [l for l in log if l.startswith(("round ", "epoch ")) and "[" not in l]
    lines.append("\ntrain translate (de-en-docs, time-bounded)")
    lines += ["  " + l for l in keep[:1] + rounds[-1:] + keep[1:]]
    summary["translate"] = keep + rounds
except OSError:
    pass

text = "\n".join(lines)
print(text)
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
with open(os.path.join(out, "summary.txt"), "w") as f:
    f.write(text + "\n")
