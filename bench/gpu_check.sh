#!/usr/bin/env bash
# The GPU check, turnkey on a GPU node that has Python, its own PyTorch and no internet (Doc/deploy.md, "Offline
# GPU nodes and clusters"): from this repository and a wheelhouse made by `make wheelhouse PY=<the node's Python>`
# on a connected machine, it
#   1. installs this package and the dependencies the node lacks into a temporary venv over the node's Python (the
#      node's torch family is used as it is, nothing is downloaded),
#   2. records the card, driver, torch and CUDA versions,
#   3. runs the GPU test tier, pytest -m gpu tests/gpu,
#   4. runs the throughput benchmark, bench/gpu_check.py,
# and writes to OUT one JSON summary (summary.json) and one Markdown table (summary.md), next to the benchmark's
# own gpu_check.json and gpu_check.md and the tier's gpu_tier.xml and gpu_tier_slow.xml. Every step has a time limit
# (all together 8 minutes on one H200); a step cut short keeps what it measured (pytest stops on SIGINT and writes
# its report, the benchmark writes its rows as they come); a failed step does not stop the next; the exit status is
# non-zero if any failed. The node's PyTorch must come with torchvision, torchaudio, numpy and pillow (NVIDIA's
# images and cluster modules do): the wheelhouse holds everything else.
#
# Usage: bench/gpu_check.sh [--allow-cpu] [--any-torch] [--wheelhouse DIR] [--out DIR] [-- BENCHMARK ARGS...]
#   --allow-cpu      no GPU: the GPU tier on the CPU (AMST_GPU_TIER_ON_CPU=1) and a tiny benchmark (a code check)
#   --any-torch      the node's torch is outside pyproject.toml's range: install without checking it (measures an
#                    untested torch; without this flag the install stops and says so)
#   --wheelhouse     default ./wheelhouse;  --out: default $OUT or ./bench-out
#   PYTHON           the node's Python (default python3)
#   INSTALL_S, NODE_S, TIER_S, SLOW_TIER_S, BENCH_S   the steps' time limits in seconds (45, 15, 130, 110, 180:
#                    480 in all; --allow-cpu: 75, 30, 600, 600, 300)
#   TIER_EXCLUDE     a pytest -k expression of tier tests to leave out, e.g. compiled (on a CPU, inductor's C++
#                    build takes minutes: the suite's bare-node check sets it; the compiled paths have CPU tests of
#                    their own in tests/core/test_cuda_paths.py)
#   after --         more arguments for bench/gpu_check.py, e.g. -- --service
set -uo pipefail  # no -e: a failed step is recorded and the next one runs

REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
WHEELHOUSE=$REPO/wheelhouse
OUT=${OUT:-$REPO/bench-out}
ALLOW_CPU=0
ANY_TORCH=0
BENCH_EXTRA=()
while [ $# -gt 0 ]; do
    case $1 in
        --allow-cpu) ALLOW_CPU=1 ;;
        --any-torch) ANY_TORCH=1 ;;
        --wheelhouse|--out)
            [ $# -ge 2 ] || { echo "gpu_check.sh: $1 needs a folder" >&2; exit 2; }
            if [ "$1" = --out ]; then OUT=$2; else WHEELHOUSE=$2; fi
            shift ;;
        --) shift; BENCH_EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
# Time limits in seconds; on a GPU their sum, 480, keeps the whole check within 8 minutes (the tier in two steps,
# so that its compile and service tests, the slowest, cannot take the rest's time). A CPU (--allow-cpu, a code
# check) is far slower at the tier's compile tests: there the limits only catch a hang.
if [ $ALLOW_CPU -eq 1 ]; then
    INSTALL_S=${INSTALL_S:-75} NODE_S=${NODE_S:-30} TIER_S=${TIER_S:-600} SLOW_TIER_S=${SLOW_TIER_S:-600}
    BENCH_S=${BENCH_S:-300}
else
    INSTALL_S=${INSTALL_S:-45} NODE_S=${NODE_S:-15} TIER_S=${TIER_S:-130} SLOW_TIER_S=${SLOW_TIER_S:-110}
    BENCH_S=${BENCH_S:-180}
fi

mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
WHEELHOUSE=$(cd "$WHEELHOUSE" 2>/dev/null && pwd || echo "$WHEELHOUSE")
TMP=$(mktemp -d "${TMPDIR:-/tmp}/amst-gpu-check.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
# What the steps leave (pytest's folders: --basetemp below; torch.compile's caches; pip's) goes with $TMP. Not
# TMPDIR itself: multiprocessing puts the Unix sockets that pass a DataLoader's tensors there, and a socket path
# over 107 characters (a deep TMPDIR) fails in the loader processes, hanging the parent.
export TORCHINDUCTOR_CACHE_DIR=$TMP/inductor TRITON_CACHE_DIR=$TMP/triton PIP_NO_CACHE_DIR=1
ENV=$TMP/env
STEPS=$TMP/steps.tsv
STARTED=$(date +%s)
FAILED=0
: > "$STEPS"
rm -f "$OUT"/summary.json "$OUT"/summary.md "$OUT"/gpu_check.json "$OUT"/gpu_check.md "$OUT"/gpu_tier*.xml

say() { echo "[gpu_check.sh $(( $(date +%s) - STARTED )) s] $*" >&2; }

# step NAME LIMIT NOTE COMMAND...: runs COMMAND under `timeout`, records its status, time and NOTE. At the limit
# the command gets SIGINT (STEP_SIGNAL; pytest then stops like on Ctrl-C, its fixtures torn down and its report
# written), then SIGKILL 20 s later.
step() {
    local name=$1 limit=$2 note=$3 start rc status
    shift 3
    say "$name: starting (at most $limit s)"
    start=$(date +%s)
    timeout --signal="${STEP_SIGNAL:-TERM}" --kill-after=20 "$limit" "$@"
    rc=$?
    case $rc in
        0) status=ok ;;
        124|137) status="timed out after $limit s" ;;
        *) status="failed (exit $rc)" ;;
    esac
    [ $rc -eq 0 ] || FAILED=1
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(( $(date +%s) - start ))" "$note" >> "$STEPS"
    say "$name: $status"
    return $rc
}

skipped() {  # skipped NAME WHY: a step that could not run counts as failed
    printf '%s\t%s\t0\t%s\n' "$1" "not run" "$2" >> "$STEPS"
    say "$1: not run: $2"
    FAILED=1
}

# 1. The environment: a venv over the node's Python that sees every folder that Python imports from (its torch),
#    into which pip installs, from the wheelhouse alone, what is missing. --without-pip: the node's pip is used
#    (Debian's Python has no ensurepip without python3-venv); a node without pip runs pip from its wheel.
install_env() {
    [ -d "$WHEELHOUSE" ] || { echo "no wheelhouse at $WHEELHOUSE: run 'make wheelhouse PY=X.Y' on a connected" \
                                   "machine and copy it here, or pass --wheelhouse DIR" >&2; return 1; }
    # What the wheelhouse leaves to the node (its PyTorch's companions): said plainly, not as pip's "No matching
    # distribution found for torchvision".
    "$PYTHON" -c 'import torch, torchvision, torchaudio, numpy, PIL' || {
        echo "the node's Python ($PYTHON) must have torch with torchvision, torchaudio, numpy and pillow (an" \
             "NVIDIA image or a cluster module has them); the wheelhouse holds everything else" >&2; return 1; }
    "$PYTHON" -m venv --without-pip "$ENV" || return 1
    local site
    site=$("$ENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') || return 1
    "$PYTHON" "$REPO/bench/gpu_check_node.py" paths "$ENV/bin/python" > "$site/_amst_node.pth" || return 1
    local pip=("$ENV/bin/python" -m pip)
    if ! "${pip[@]}" --version >/dev/null 2>&1; then
        local wheel
        wheel=$(ls "$WHEELHOUSE"/pip-*.whl 2>/dev/null | head -n 1)
        [ -n "$wheel" ] || { echo "the node's Python has no pip and the wheelhouse none" >&2; return 1; }
        pip=("$ENV/bin/python" "$wheel/pip")
    fi
    # A copy of the package's files: pip builds in the source folder, and the node's copy of the repository may
    # be read-only or shared.
    mkdir -p "$TMP/src"
    cp -r "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/amst_core" "$REPO/amst_client" "$REPO/api" "$REPO/worker" \
        "$REPO/ui" "$REPO/launch" "$REPO/migrations" "$TMP/src/" || return 1
    local offline=(install --no-index --find-links "$WHEELHOUSE" --disable-pip-version-check
                   --no-warn-script-location)
    if [ "$ANY_TORCH" = 1 ]; then
        # Every requirement but the torch family, then the package without its own dependency check.
        "$ENV/bin/python" "$REPO/tools/wheelhouse.py" --requirements --with-tests > "$TMP/requirements.txt" &&
            "${pip[@]}" "${offline[@]}" -r "$TMP/requirements.txt" &&
            "${pip[@]}" "${offline[@]}" --no-deps "$TMP/src" || return 1
    else
        "${pip[@]}" "${offline[@]}" "$TMP/src[test]" || {
            echo "install failed; if pip found no torch above, the node's torch is outside pyproject.toml's range:" \
                 "--any-torch measures it anyway" >&2
            return 1
        }
    fi
    # The node's torch family must be the one the check measures: pip installs none (the wheelhouse has none).
    "$ENV/bin/python" -c 'import torch, sys; print("torch", torch.__version__, "from", torch.__file__)' || return 1
}

# `timeout` runs programs, not shell functions: the function runs in a child bash.
export -f install_env
export REPO PYTHON WHEELHOUSE ENV TMP ANY_TORCH
step install "$INSTALL_S" "wheelhouse $WHEELHOUSE$([ $ANY_TORCH -eq 0 ] || echo ', --any-torch')" bash -c install_env
INSTALLED=$?
PY=$ENV/bin/python
export PATH="$ENV/bin:$PATH" PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"  # the repository's code first
cd "$REPO" || exit 1

# 2. The node.
if [ $INSTALLED -eq 0 ]; then
    step node "$NODE_S" "" "$PY" bench/gpu_check_node.py node --json "$TMP/node.json"
else
    "$PYTHON" bench/gpu_check_node.py node --json "$TMP/node.json" >/dev/null 2>&1  # what it can say
    skipped node "the install failed"
fi

# 3. The GPU test tier (tests/gpu; the tier's conftest runs it on a CPU when AMST_GPU_TIER_ON_CPU=1), in two steps:
#    everything but the slowest tests, then torch.compile's and the service's.
SLOW_TESTS="compiled or amst_up or device_side_assert"
TIER_ENV=(env)
ON=""
if [ $ALLOW_CPU -eq 1 ]; then
    ON=", on the CPU"
    TIER_ENV+=(AMST_GPU_TIER_ON_CPU=1)
fi
tier() {  # tier STEP LIMIT XML SELECTION
    if [ ! -d tests/gpu ]; then
        skipped "$1" "tests/gpu is missing from this repository"
    elif [ $INSTALLED -ne 0 ]; then
        skipped "$1" "the install failed"
    else
        STEP_SIGNAL=INT step "$1" "$2" "pytest -m gpu tests/gpu -k '$4'$ON" "${TIER_ENV[@]}" "$PY" -m pytest -m gpu \
            tests/gpu -k "$4" -q -p no:cacheprovider --basetemp "$TMP/pytest" --junitxml "$OUT/$3"
    fi
}
EXCLUDE=${TIER_EXCLUDE:+ and not ($TIER_EXCLUDE)}
tier "GPU tier" "$TIER_S" gpu_tier.xml "not ($SLOW_TESTS)$EXCLUDE"
tier "GPU tier: compile and service" "$SLOW_TIER_S" gpu_tier_slow.xml "($SLOW_TESTS)$EXCLUDE"

# 4. The throughput benchmark.
BENCH_ARGS=(--json "$OUT/gpu_check.json" --markdown "$OUT/gpu_check.md")
[ $ALLOW_CPU -eq 1 ] && BENCH_ARGS+=(--allow-cpu --train 8 --batch-size 4 --repeats 1)
BENCH_ARGS+=(${BENCH_EXTRA[@]+"${BENCH_EXTRA[@]}"})  # (bash before 4.4 calls an empty array unset)
if [ $INSTALLED -ne 0 ]; then
    skipped benchmark "the install failed"
else
    step benchmark "$BENCH_S" "bench/gpu_check.py ${BENCH_ARGS[*]:4}" "$PY" bench/gpu_check.py "${BENCH_ARGS[@]}"
fi

# 5. The summary, with the node's Python: it needs nothing installed.
"$PYTHON" bench/gpu_check_node.py report --out "$OUT" --steps "$STEPS" --node "$TMP/node.json" \
    --tier-xml "$OUT/gpu_tier.xml" "$OUT/gpu_tier_slow.xml" --bench-json "$OUT/gpu_check.json" --bench-md "$OUT/gpu_check.md"
say "done in $(( $(date +%s) - STARTED )) s; $OUT/summary.json and $OUT/summary.md$([ $FAILED -eq 0 ] || echo '; some steps FAILED')"
exit $FAILED
