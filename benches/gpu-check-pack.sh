#!/usr/bin/env bash
# Builds the release binaries that benches/gpu-check.sh runs (the CLI and one binary per test
# suite, named after it) and packs them as DIR/bins.tar.xz, for a GPU machine without a Rust
# toolchain: there, unpack it and point WGFORMER_PREBUILT at it.
#   benches/gpu-check-pack.sh [DIR]       DIR: .gpu by default (.git/info/exclude should list it)
#   benches/gpu-check-pack.sh --copy DIR  only builds and copies the binaries into DIR
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --copy ]; then
    stage=$2 dir=""
else
    stage=$(mktemp -d) dir=${1:-.gpu}
fi
mkdir -p "$stage"
# An MPI build for the data-parallel benches, where this machine has MPI (it links libmpi:
# the GPU machine needs the same MPI to run it).
if command -v mpicc >/dev/null; then
    cargo build --release --quiet --features mpi && cp target/release/wgformer "$stage/wgformer-mpi"
fi
cargo build --release --quiet
cp target/release/wgformer "$stage/"
cargo test --release --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys, shutil
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        shutil.copy(m["executable"], sys.argv[1] + "/" + m["target"]["name"])
' "$stage"
[ -z "$dir" ] && exit 0
mkdir -p "$dir"
# One xz stream with a 64 MiB dictionary: the suites share most of their code (10 MB, not 26).
tar -C "$stage" -cf - . | xz -9 -T1 >"$dir/bins.tar.xz.tmp"
mv "$dir/bins.tar.xz.tmp" "$dir/bins.tar.xz"
rm -r "$stage"
echo "$dir/bins.tar.xz: $(du -h "$dir/bins.tar.xz" | cut -f1)"
