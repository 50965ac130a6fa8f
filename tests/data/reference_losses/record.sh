#!/usr/bin/env bash
# Records the per-step losses tests/cli/reference_losses.rs compares against: runs each command
# with the release binary, takes the step losses from its metrics.jsonl, and writes NAME.json
# with the command and the adapter it ran on. Run from the repository root after
# `cargo build --release`; commit the JSON files. Re-record only on purpose: these are the
# losses the training code must keep reproducing.
set -euo pipefail
cd "$(dirname "$0")/../../.."
bin=target/release/wgformer
dir=tests/data/reference_losses
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
record() { # NAME ARGS...
    local name=$1; shift
    "$bin" "$@" --out "$tmp/$name" 2>"$tmp/$name.log" || { tail -5 "$tmp/$name.log"; exit 1; }
    "$bin" info --json >"$tmp/info.json"
    python3 - "$tmp/$name/metrics.jsonl" "$tmp/info.json" "$dir/$name.json" "$@" <<'PY'
import json, sys
metrics, info, out, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
losses = [[r["step"], r["loss"]] for r in map(json.loads, open(metrics)) if r["kind"] == "step" and r["loss"] is not None]
chosen = json.load(open(info))["chosen"]
with open(out, "w") as f:
    json.dump({"args": args, "adapter": chosen["name"], "driver_info": chosen["driver_info"], "losses": losses}, f)
    f.write("\n")
print(f"{out}: {len(losses)} steps on {chosen['name']}")
PY
}
record vit train vit --train-images 512 --epochs 2 --batch 32 --test-images 100
record translate train translate --data ding --train-pairs 256 --epochs 2 --size tiny --vocab 300 \
    --valid-pairs 8 --test-pairs 8 --batch 128 --warmup 10
