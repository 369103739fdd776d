#!/usr/bin/env bash
# Every benchmark's GPU table plus the test suite on CUDA, in one run of at most 8 minutes, into one JSON file.
#
#   bench/gpu.sh [--out FILE]            # on a machine with CUDA (default FILE: bench/results/gpu.json)
#   bench/gpu.sh --smoke [--out FILE]    # CPU smoke run (< 60 s): the same steps, tiny sizes, no test suite
#
# Steps (each under its own time limit; a step that fails or runs out of time is recorded, the others still run):
#   register  bench/register.py --device cuda: single pair and batched x16 vs OpenCV ECC and kornia
#   edges     bench/edges.py --device cuda: Sobel magnitude at batches 1, 8, 32, 128 (library table)
#   match     bench/match.py --device cuda: gdvision and kornia SIFT on the GPU vs OpenCV SIFT
#   depth     bench/depth.py: its own CUDA row (gdvision_cuda) when CUDA is there, next to SGBM/BM and the CPU run
#   attack    bench/attack.py --device cuda: attack steps/s (steps_per_s_mean per mode)
#   tests     the whole test suite with GDVISION_TEST_DEVICES=cuda (device tests on CUDA only), junit counts
# In --smoke mode the device is cpu; edges and attack (targeted only) run with tiny sizes; register, match and depth
# (which have no size small enough for the budget) are checked for the options this script passes (their --help);
# no tests.
#
# The scripts run from a scratch copy of bench/ (sample_data linked in), so nothing is written into the checkout
# except FILE. The JSON holds, per step: exit code, wall seconds, whether it timed out, the bench's own result
# JSON and the tail of its log; plus the machine (nvidia-smi, torch, CUDA) and the total wall time.
set -u
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SMOKE=0
OUT="$REPO/bench/results/gpu.json"
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1 ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
PY="${PYTHON:-python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gdv-gpu-XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
COPY="$WORK/repo"  # the scripts' ROOT: bench/ copied, sample_data (and ../shared, where depth.py looks) linked
mkdir -p "$COPY/bench" "$WORK/res" "$WORK/logs"
cp "$REPO"/bench/*.py "$COPY/bench/"
ln -s "$REPO/sample_data" "$COPY/sample_data"
if [ -d "$REPO/../shared" ]; then ln -s "$REPO/../shared" "$WORK/shared"; fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export GDVISION_WORKER=0  # benchmarks time in-process runs
THREADS="$(nproc)"
T0=$(date +%s)
: > "$WORK/steps.tsv"

# step NAME LIMIT_S RESULT_JSON CMD...: run CMD from the scratch copy under a time limit, record the outcome
step() {
    local name="$1" limit="$2" result="$3"
    shift 3
    echo "== $name (limit ${limit}s): $*" >&2
    local t rc wall
    t=$(date +%s%N)
    (cd "$COPY" && timeout -k 10 "$limit" "$@") > "$WORK/logs/$name.log" 2>&1
    rc=$?
    wall=$(( ($(date +%s%N) - t) / 1000000 ))
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$wall" "$result" >> "$WORK/steps.tsv"
    echo "   exit $rc in ${wall} ms" >&2
}

# check_options NAME SCRIPT OPTION...: the script's --help lists every option (smoke mode's check of a step)
check_options() {
    local name="$1" script="$2"
    shift 2
    local t rc=0 help wall
    t=$(date +%s%N)
    help="$(cd "$COPY" && "$PY" "bench/$script" --help 2>&1)" || rc=$?
    for opt in "$@"; do
        grep -q -- "$opt" <<< "$help" || { echo "bench/$script has no option $opt" >> "$WORK/logs/$name.log"; rc=3; }
    done
    echo "$help" | tail -3 >> "$WORK/logs/$name.log"
    wall=$(( ($(date +%s%N) - t) / 1000000 ))
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$wall" "-" >> "$WORK/steps.tsv"
    echo "== $name: options checked, exit $rc" >&2
}

R="$WORK/res"
if [ "$SMOKE" = 1 ]; then
    DEV=cpu
    step edges 60 "$R/edges.json" "$PY" bench/edges.py --device $DEV --batches 1 --reps 2 --size 64 --skip-files \
        --threads 2 --out "$R/edges.json"
    step attack 60 "$COPY/bench/results/attack_match_gpu.json" "$PY" bench/attack.py --device $DEV --quick --steps 2 \
        --only match --threads 2 --tag _gpu
    check_options register register.py --device --pairs --threads --out
    check_options match match.py --device --pairs --threads --out
    check_options depth depth.py --threads --no-random --out
else
    DEV=cuda
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
        || { echo "error: no CUDA device (use --smoke on a CPU)" >&2; exit 1; }
    step register 90 "$R/register.json" "$PY" bench/register.py --device $DEV --pairs 32 --kornia-pairs 8 \
        --threads "$THREADS" --out "$R/register.json"
    step edges 50 "$R/edges.json" "$PY" bench/edges.py --device $DEV --batches 1,8,32,128 --reps 30 --skip-files \
        --threads "$THREADS" --out "$R/edges.json"
    step match 70 "$R/match.json" "$PY" bench/match.py --device $DEV --pairs 20 --threads "$THREADS" \
        --out "$R/match.json"
    step depth 80 "$R/depth.json" "$PY" bench/depth.py --no-random --repeat 1 --threads "$THREADS" \
        --out "$R/depth.json"
    step attack 60 "$COPY/bench/results/attack_gpu.json" "$PY" bench/attack.py --device $DEV --steps 100 \
        --steps-unmatch 100 --threads "$THREADS" --tag _gpu
    step tests 120 "$R/junit.xml" env GDVISION_TEST_DEVICES=cuda GDVISION_GPU_SH=1 "$PY" -m pytest -q \
        -p no:cacheprovider --rootdir "$REPO" -c "$REPO/pyproject.toml" "$REPO/tests" --junitxml "$R/junit.xml"
fi

mkdir -p "$(dirname "$OUT")"
"$PY" - "$WORK" "$OUT" "$SMOKE" "$DEV" "$T0" <<'EOF'
import json, os, platform, subprocess, sys, time
import xml.etree.ElementTree as ET

work, out, smoke, dev, t0 = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4], int(sys.argv[5])
doc = {"mode": "smoke" if smoke else "gpu", "device": dev, "steps": {}}
try:
    import torch

    doc["torch"] = torch.__version__
    doc["cuda"] = torch.version.cuda
    if torch.cuda.is_available():
        doc["gpu"] = torch.cuda.get_device_name(0)
except Exception as exc:  # noqa: BLE001
    doc["torch"] = f"unavailable: {exc}"
try:
    smi = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    doc["nvidia_smi"] = subprocess.run(smi, capture_output=True, text=True, timeout=20).stdout.strip()
except (OSError, subprocess.TimeoutExpired):
    doc["nvidia_smi"] = None
doc["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
for line in open(os.path.join(work, "steps.tsv")):
    name, rc, wall, result = line.rstrip("\n").split("\t")
    rec = {"exit_code": int(rc), "wall_s": round(int(wall) / 1000, 2), "timed_out": int(rc) in (124, 137)}
    if result.endswith(".json") and os.path.exists(result):
        rec["result"] = json.load(open(result))
    elif result.endswith(".xml") and os.path.exists(result):
        root = ET.parse(result).getroot()
        suite = root if root.tag == "testsuite" else root[0]
        rec["result"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        rec["result"]["failed"] = [
            f"{c.get('classname')}::{c.get('name')}"
            for c in suite.iter("testcase")
            if c.find("failure") is not None or c.find("error") is not None
        ][:50]
    elif result != "-":
        rec["result"] = None
    log = os.path.join(work, "logs", name + ".log")
    rec["log_tail"] = open(log, errors="replace").read()[-1500:] if os.path.exists(log) else ""
    doc["steps"][name] = rec
doc["total_wall_s"] = round(time.time() - t0, 1)
doc["ok"] = all(r["exit_code"] == 0 for r in doc["steps"].values())
with open(out, "w") as f:
    json.dump(doc, f, indent=1, default=str)
summary = ", ".join(f"{k} {'ok' if r['exit_code'] == 0 else 'exit ' + str(r['exit_code'])} {r['wall_s']}s"
                    for k, r in doc["steps"].items())
print(f"{doc['mode']} on {dev}: {summary}; total {doc['total_wall_s']} s -> {out}")
sys.exit(0 if doc["ok"] else 1)
EOF
