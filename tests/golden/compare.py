"""Compares `wgformer verify` output with a case's expected.safetensors by the rule of this
folder's README (err = max|got - want| / max(max|want|, 1e-3 K) per tensor; logits and loss
within 1e-4, gradients within 1e-3): for cases made on the fly, too large to commit.

    python tests/golden/make_marian.py --out /tmp/opus-case opus-shape
    wgformer verify --out /tmp/opus-case/ours.safetensors /tmp/opus-case
    python tests/golden/compare.py /tmp/opus-case /tmp/opus-case/ours.safetensors
"""
import sys

from safetensors.numpy import load_file


def main():
    case, ours = sys.argv[1], sys.argv[2]
    want, got = load_file(f"{case}/expected.safetensors"), load_file(ours)
    scale = {g: max(abs(v).max() for k, v in want.items() if k.startswith("grad.") == g) for g in (False, True)}
    worst, failed = (0.0, ""), []
    for name, w in want.items():
        grad = name.startswith("grad.")
        err = abs(got[name].astype("float64") - w).max() / max(abs(w).max(), 1e-3 * scale[grad])
        limit = 1e-3 if grad else 1e-4
        worst = max(worst, (err / limit, name))
        if err > limit:
            failed.append(f"{name}: err {err:.2e} over {limit:.0e}")
    print(f"{len(want)} tensors; closest to its limit: {worst[1]} ({worst[0]:.3f} of it)")
    if failed:
        print("\n".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
