#!/usr/bin/env bash
# One-call GPU check: on any machine with a GPU (or on lavapipe, slowly), runs the GPU test
# suites, `wgformer info`, the matmul and attention benches and whole training steps of four
# model presets (with the adapter's attention choice and with the fused kernels, for the
# before/after), PyTorch's steps where PyTorch and CUDA are installed, then prints one table.
# Results: OUT/*.json (one file per bench), OUT/tests.tsv, OUT/summary.json, OUT/*.log.
#
#   benches/gpu-check.sh [OUT]                 builds with cargo, then checks (OUT: gpu-check-out)
#   WGFORMER_PREBUILT=DIR benches/gpu-check.sh  uses DIR/wgformer and DIR/<suite> test binaries
#                                               built elsewhere (benches/gpu-check-pack.sh)
# Settings: GPU_CHECK_SWEEP=1 (the tiled matmul's sweep on a CPU adapter too),
# GPU_CHECK_SUITE_TIMEOUT (s per test suite, default 480), GPU_CHECK_GL=0 (skip the GL
# suites; they run last since a GL hang once lost an H200's device), GPU_CHECK_JOBS (suites at once),
# GPU_CHECK_STEPS ("MODEL:BATCH ..." for the step benches), GPU_CHECK_REQUIRE_COOP=0 (on a GPU, let
# the cooperative-matrix tests skip instead of failing when the adapter offers no matrix units).
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-gpu-check-out}")
mkdir -p "$out"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
suite_timeout=${GPU_CHECK_SUITE_TIMEOUT:-480}
jobs=${GPU_CHECK_JOBS:-$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))}
started=$(date +%s)
log() { echo "[gpu-check $(( $(date +%s) - started ))s] $*" >&2; }

# The binaries: the CLI and the test binaries (one per tests/*/main.rs).
bins="$out/bin"
mkdir -p "$bins"
if [ -n "${WGFORMER_PREBUILT:-}" ]; then
    cp "$WGFORMER_PREBUILT"/* "$bins"/
    # The CLI tests start the binary at the path cargo compiled into them.
    want=$(grep -aom1 '/[^[:space:]"]*/target/release/wgformer' "$bins/cli" 2>/dev/null || true)
    if [ -n "$want" ] && [ ! -x "$want" ]; then
        mkdir -p "$(dirname "$want")" && cp "$bins/wgformer" "$want"
    fi
    # Tests find their data under the repo path compiled into them.
    root=$(grep -aom1 '/[^[:space:]"]*/tests/golden' "$bins/reference_cases" 2>/dev/null | sed 's#/tests/golden$##' || true)
    if [ -n "$root" ] && [ ! -e "$root" ]; then
        mkdir -p "$(dirname "$root")" && ln -s "$PWD" "$root"
    fi
else
    log "building (release)"
    benches/gpu-check-pack.sh --copy "$bins" || exit 1
fi
cli="$bins/wgformer"
suites=$(cd "$bins" && ls | grep -v '^wgformer\(-mpi\)\?$' | sort)

# One test suite under a time limit: a line of tests.tsv (backend, suite, result, seconds, summary).
run_suite() { # BACKEND TIMEOUT SUITE
    local backend=$1 limit=$2 suite=$3 log="$out/test-$1-$3.log" start result
    start=$(date +%s%N)
    WGFORMER_TEST_BACKENDS=$backend timeout -k 5 "$limit" "$bins/$suite" >"$log" 2>&1
    case $? in 0) result=pass ;; 124 | 137) result=timeout ;; *) result=fail ;; esac
    printf '%s\t%s\t%s\t%d\t%s\n' "$backend" "$suite" "$result" $(( ($(date +%s%N) - start) / 1000000000 )) \
        "$(grep -a '^test result' "$log" | tail -1)"
}
export -f run_suite
export out bins
run_suites() { # BACKEND TIMEOUT: every suite, $jobs at once
    printf '%s\n' $suites | xargs -P "$jobs" -I{} bash -c 'run_suite "$@"' _ "$1" "$2" {} >>"$out/tests.tsv"
}
WGFORMER_BACKEND=vulkan "$cli" info --json >"$out/info.json" 2>"$out/info.log"
cpu=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["chosen"]["device_type"] == "Cpu")' "$out/info.json" 2>/dev/null)
# On a GPU the cooperative-matrix tests must run, not skip (GPU_CHECK_REQUIRE_COOP=0 lets them).
if [ "$cpu" != True ]; then export WGFORMER_REQUIRE_COOP=${GPU_CHECK_REQUIRE_COOP:-1}; fi
: >"$out/tests.tsv"
log "test suites on Vulkan ($jobs at once, ${suite_timeout}s each)"
run_suites vulkan "$suite_timeout"

# The benches measure kernel choices afresh and keep them with the results (the report counts them).
export WGFORMER_TUNE_CACHE="$out/tuning.json"
rm -f "$WGFORMER_TUNE_CACHE"
bench() { # NAME ENV... -- ARGS...
    local name=$1; shift
    local env=()
    while [ "$1" != "--" ]; do env+=("$1"); shift; done; shift
    log "bench $name"
    env "${env[@]}" WGFORMER_BACKEND=vulkan "$cli" bench "$@" --json >"$out/$name.json" 2>"$out/$name.log" ||
        { log "bench $name failed: $(tail -1 "$out/$name.log")"; echo '[]' >"$out/$name.json"; }
}
WGFORMER_BACKEND=vulkan "$cli" info 2>&1 | tee "$out/info.txt" >&2
runs=5; [ "$cpu" = True ] && runs=2
bench matmul -- matmul --compare-blas --runs "$runs"
# The tiled matmul swept over its blocks (TM,TN), strips (k per strip, and buffers: 8 or 16
# single, 8 double-buffered) and split counts at the same shapes, with the measured choices
# off (about three minutes on a GPU; on CPU adapters only with GPU_CHECK_SWEEP=1).
if [ "$cpu" != True ] || [ "${GPU_CHECK_SWEEP:-0}" = 1 ]; then
    for block in 4,4 8,4 4,8 8,8; do
        for strips in 8:1 16:1 8:2; do
            strip=${strips%:*} buffers=${strips#*:}
            for splits in 1 2 4 8; do
                bench "sweep-${block/,/x}-k$strip-b$buffers-s$splits" WGFORMER_MATMUL_VARIANT=tiled WGFORMER_TUNE=0 \
                    WGFORMER_MATMUL_BLOCK="$block" WGFORMER_MATMUL_STRIP="$strip" WGFORMER_MATMUL_BUFFERS="$buffers" \
                    WGFORMER_MATMUL_SPLITS="$splits" -- matmul --runs "$runs"
            done
        done
    done
fi
# f16 operands: on matrix units (cooperative matrices) where the adapter has them, and the
# tiled f16 kernel for comparison. CPU adapters time one small shape (it is slow there).
f16_shapes=(); [ "$cpu" = True ] && f16_shapes=(--shapes 256x256x256)
bench matmul-f16 -- matmul_f16 "${f16_shapes[@]}" --runs "$runs"
bench matmul-f16-tiled WGFORMER_MATMUL_F16=tiled -- matmul_f16 "${f16_shapes[@]}" --runs "$runs"
# The adapter's fused variant (rows on GPUs) and the tiled one, against the composed path, at
# the head dims the models use (64: vit-base, transformer-base; 32: transformer-small).
for d in 64 32; do
    bench "attention-d$d" -- attention --tokens 256,1024 --head-dim "$d" --runs "$runs"
    bench "attention-d$d-tiled" WGFORMER_ATTENTION_VARIANT=tiled -- attention --tokens 256,1024 --head-dim "$d" --runs "$runs"
done
# transformer-base b128's logits (606 MB) pass a software adapter's 128 MiB binding: b8 there.
default_steps="vit-cifar:16 vit-base:8 transformer-small:32 transformer-base:128"
[ "$cpu" = True ] && default_steps="vit-cifar:16 vit-base:8 transformer-small:32 transformer-base:8"
for case in ${GPU_CHECK_STEPS:-$default_steps}; do
    model=${case%:*} batch=${case#*:}
    bench "step-$model" -- step --model "$model" --batch "$batch" --runs "$runs"
    # The graph fusions off (epilogues, chains, in-place sums): what they buy on this card.
    bench "step-$model-nofusion" WGFORMER_FUSION=0 -- step --model "$model" --batch "$batch" --runs "$runs"
    bench "step-$model-fused" WGFORMER_ATTENTION_VARIANT=rows -- step --model "$model" --batch "$batch" --runs "$runs"
    bench "step-$model-tiled" WGFORMER_ATTENTION_VARIANT=tiled -- step --model "$model" --batch "$batch" --runs "$runs"
    # Mixed precision (issue 21's target: 3x the f32 step on matrix units, ahead of PyTorch AMP).
    bench "step-$model-f16" -- step --model "$model" --batch "$batch" --precision f16 --runs "$runs"
    # The same with each parameter cast to f16 once per step instead of before each product.
    bench "step-$model-f16-once" WGFORMER_F16_WEIGHT_CASTS=once -- step --model "$model" --batch "$batch" --precision f16 --runs "$runs"
done

# Data parallel over MPI where mpirun and an MPI build exist (DIR/wgformer-mpi from the pack,
# or built here): the sums' bandwidth between 2 ranks, and 2 ranks' steps sharing this GPU
# (compute, sums, the share hidden behind the backward).
mpi_cli="$bins/wgformer-mpi"
if [ ! -x "$mpi_cli" ] && command -v cargo >/dev/null && command -v mpicc >/dev/null; then
    cargo build --release --quiet --features mpi && cp target/release/wgformer "$out/wgformer-mpi" && mpi_cli="$out/wgformer-mpi"
fi
if command -v mpirun >/dev/null && [ -x "$mpi_cli" ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    for args in "allreduce" "step --model vit-base --batch 16" "step --model transformer-base --batch 32"; do
        name="mpi-$(echo "$args" | tr ' ' '-' | tr -d '-' | cut -c1-40)"
        log "mpirun -np 2 bench $args"
        WGFORMER_BACKEND=vulkan timeout 300 mpirun -np 2 "$mpi_cli" bench $args --runs "$runs" --json \
            >"$out/$name.json" 2>"$out/$name.log" || log "mpi bench $args failed: $(tail -1 "$out/$name.log")"
        python3 -c 'import json,sys; [print(r["shape"], round(r["median_ms"], 2), "ms;", r.get("note", "")) for r in json.load(open(sys.argv[1]))]' \
            "$out/$name.json" >&2 2>/dev/null || true
    done
else
    log "no mpirun or no MPI build here: data-parallel benches skipped"
fi

# The main job on the GPU, time-bounded: `train translate` on de-en-docs for
# GPU_CHECK_TRANSLATE_MINUTES (default 3; 0 skips; CPU adapters skip it) of training and
# validation, then its test BLEU, greedy and beam (sacreBLEU-exact, printed by the run).
translate_minutes=${GPU_CHECK_TRANSLATE_MINUTES:-3}
if [ "$cpu" != True ] && [ "$translate_minutes" != 0 ]; then
    log "train translate, $translate_minutes minutes"
    WGFORMER_BACKEND=vulkan "$cli" train translate --out "$out/translate-run" --max-minutes "$translate_minutes" \
        >"$out/translate.log" 2>&1 || log "train translate failed: $(tail -1 "$out/translate.log")"
    grep -a "planned\|^round\|^epoch\|test BLEU" "$out/translate.log" | tr '\r' '\n' | grep -v '\[' >&2 || true
    rm -rf "$out/translate-run"
fi

if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    log "PyTorch steps"
    python3 benches/torch_steps.py 10 >"$out/torch.jsonl" 2>"$out/torch.log" || log "PyTorch failed: $(tail -1 "$out/torch.log")"
    log "torch.matmul at the matmul bench's shapes"
    mapfile -t mm_shapes < <(python3 -c 'import json,sys; [print(r["shape"]) for r in json.load(open(sys.argv[1]))]' \
        "$out/matmul.json" 2>/dev/null)
    python3 benches/torch_matmul.py 10 "${mm_shapes[@]}" >"$out/torch-matmul.jsonl" 2>"$out/torch-matmul.log" ||
        log "torch.matmul failed: $(tail -1 "$out/torch-matmul.log")"
else
    log "no PyTorch with CUDA here: no side-by-side figures"
fi

if [ "${GPU_CHECK_GL:-1}" != 0 ]; then
    log "test suites on GL"
    run_suites gl "$suite_timeout"
fi

python3 benches/gpu_check_report.py "$out" || cat "$out"/tests.tsv
log "done in $(( $(date +%s) - started )) s; results in $out"
