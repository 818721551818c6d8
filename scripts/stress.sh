#!/usr/bin/env bash
# Fault scenarios against a short synthetic training run (32×32 images, 32 mel bands, 20 steps,
# CPU): kill -9 during training, kill -9 during checkpoint writes, SIGTERM, a full disk and two
# resumes at once. Each interrupted run is finished with --resume and its final weights and
# evaluations are compared with an uninterrupted reference run; the script ends with a table of
# scenario, outcome and anything lost.
#
#   scripts/stress.sh [WORK_DIR]        (default: a fresh temporary folder, removed at the end)
#
# The binaries come from target/release (built here if missing). The full disk is a small tmpfs
# when this runs as root and mount works; otherwise the fallback is RLIMIT_FSIZE (`ulimit -f`, with
# SIGXFSZ ignored so that a write past the limit fails with EFBIG as a full disk fails with ENOSPC).
# Needs bash, python3 (to compare safetensors tensors) and coreutils.
set -u
cd "$(dirname "$0")/.."
TRAIN=target/release/rescnn-train
[ -x "$TRAIN" ] || cargo build --release --bin rescnn-train || exit 1
TRAIN=$(realpath "$TRAIN")

WORK=${1:-$(mktemp -d /tmp/rescnn-stress.XXXXXX)}
KEEP=${1:+yes}
mkdir -p "$WORK"
RUN_ARGS=(--height 32 --width 32 --mel 32 --iters 20 --eval-every 1 --prosody 0 --device cpu --no-progress)
ROWS=()
FAILED=0

row() { # scenario outcome lost
    ROWS+=("| $1 | $2 | $3 |")
    printf '%-44s %s; lost: %s\n' "$1" "$2" "$3"
    [ "$3" = "nothing" ] || FAILED=1
}

status_of() { tr -d '\n' <"$1/STATUS" 2>/dev/null; }

# Wait until RUN has at least N evaluation lines (or give up after 60 s).
wait_for_evals() {
    local run=$1 n=$2 t=0
    while [ "$({ wc -l <"$run/metrics.jsonl"; } 2>/dev/null || echo 0)" -lt "$n" ]; do
        sleep 0.01
        t=$((t + 1))
        [ $t -gt 6000 ] && return 1
    done
}

# What RUN lost against the reference: its final weights must be bit-identical and its metrics the
# reference's evaluations (every step once, same values; wall-time fields aside).
compare() {
    python3 - "$WORK/ref" "$1" <<'EOF'
import json, struct, sys
def tensors(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    head = json.loads(b[8:8 + n])
    head.pop('__metadata__', None)
    return {k: b[8 + n + v['data_offsets'][0]: 8 + n + v['data_offsets'][1]] for k, v in head.items()}
def metrics(run):
    rows = [json.loads(l) for l in open(run + '/metrics.jsonl') if l.strip()]
    for r in rows:
        r.pop('elapsed_s'); r.pop('images_per_s')
    return rows
ref, run = sys.argv[1], sys.argv[2]
lost = []
try:
    a, b = tensors(ref + '/checkpoints/last.safetensors'), tensors(run + '/checkpoints/last.safetensors')
    if a.keys() != b.keys():
        lost.append('tensor names differ')
    else:
        diff = [k for k in a if a[k] != b[k]]
        if diff:
            lost.append(f'{len(diff)} of {len(a)} tensors differ from the reference')
    ma, mb = metrics(ref), metrics(run)
    steps = [m['step'] for m in mb]
    if len(steps) != len(set(steps)):
        lost.append('duplicate evaluations')
    if ma != mb:
        lost.append(f'metrics differ ({len(mb)} lines vs {len(ma)})')
    if json.load(open(ref + '/result.json'))['selected'] != json.load(open(run + '/result.json'))['selected']:
        lost.append('test result differs')
except Exception as e:
    lost.append(f'unreadable: {e}')
print('; '.join(lost) if lost else 'nothing')
EOF
}

stale_temporaries() { find "$1" -name '.*.tmp' | wc -l; }

echo "work folder: $WORK"
"$TRAIN" "${RUN_ARGS[@]}" --out "$WORK/ref" >"$WORK/ref.log" 2>&1 || { echo "reference run failed"; cat "$WORK/ref.log"; exit 1; }
echo "reference run: $(status_of "$WORK/ref")"

# 1. kill -9 during training, then resume.
R=$WORK/kill9-train
"$TRAIN" "${RUN_ARGS[@]}" --out "$R" >"$R.log" 2>&1 &
PID=$!
wait_for_evals "$R" 5
kill -9 $PID; wait $PID 2>/dev/null
before=$(status_of "$R")
"$TRAIN" --resume "$R" >>"$R.log" 2>&1
row "kill -9 during training" "killed at STATUS '$before'; resumed: $(status_of "$R")" "$(compare "$R")"

# 2. kill -9 during checkpoint writes: a checkpoint is written after every step, and the run is
# killed at five random moments, resumed after each; stale temporaries must be cleaned up.
R=$WORK/kill9-checkpoint
"$TRAIN" "${RUN_ARGS[@]}" --out "$R" >"$R.log" 2>&1 &
PID=$!
kills=0
seen=0
evals=0
for k in 1 2 3 4 5; do
    # Kill as soon as a checkpoint's temporary file appears: mid-write (polled without sleeping;
    # after 20000 polls, wherever the run is).
    wait_for_evals "$R" $((evals + 1))
    for ((p = 0; p < 20000; p++)); do
        compgen -G "$R/checkpoints/.*.tmp" >/dev/null && break
    done
    if kill -9 $PID 2>/dev/null; then kills=$((kills + 1)); fi
    wait $PID 2>/dev/null
    seen=$((seen + $(stale_temporaries "$R")))
    evals=$({ wc -l <"$R/metrics.jsonl"; } 2>/dev/null || echo 0)
    "$TRAIN" --resume "$R" >>"$R.log" 2>&1 &
    PID=$!
done
wait $PID
row "kill -9 during checkpoint writes (x$kills)" "resumed after each; temporaries left by the kills: $seen, at the end: $(stale_temporaries "$R"); $(status_of "$R")" "$(compare "$R")"

# 3. SIGTERM (what timeout, schedulers and containers send), then resume.
R=$WORK/sigterm
"$TRAIN" "${RUN_ARGS[@]}" --out "$R" >"$R.log" 2>&1 &
PID=$!
wait_for_evals "$R" 5
kill -TERM $PID; wait $PID; code=$?
before=$(status_of "$R" | cut -c1-40)
"$TRAIN" --resume "$R" >>"$R.log" 2>&1
row "SIGTERM" "exit $code, STATUS '$before…'; resumed: $(status_of "$R")" "$(compare "$R")"

# 4. A full disk: the run fails with a clear error, keeps its last checkpoint, and resumes once
# there is room.
R=$WORK/disk-full
mkdir -p "$R"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=4m tmpfs "$R" 2>/dev/null; then
    how="tmpfs of 4 MiB"
    "$TRAIN" "${RUN_ARGS[@]}" --out "$R" >"$R.log" 2>&1; code=$?
    err=$(grep -m1 -o 'No space left on device' "$R.log")
    kept=$(python3 -c "import sys,struct,json;b=open(sys.argv[1],'rb').read();n=struct.unpack('<Q',b[:8])[0];print(json.loads(json.loads(b[8:8+n])['__metadata__']['rescnn'])['state']['step'])" "$R/checkpoints/last.safetensors" 2>&1)
    mount -o remount,size=64m "$R"
else
    how="RLIMIT_FSIZE 3000 KiB (no tmpfs)"
    (trap '' XFSZ; ulimit -f 3000; exec "$TRAIN" "${RUN_ARGS[@]}" --out "$R") >"$R.log" 2>&1; code=$?
    err=$(grep -m1 -o 'File too large' "$R.log")
    kept=$(python3 -c "import sys,struct,json;b=open(sys.argv[1],'rb').read();n=struct.unpack('<Q',b[:8])[0];print(json.loads(json.loads(b[8:8+n])['__metadata__']['rescnn'])['state']['step'])" "$R/checkpoints/last.safetensors" 2>&1)
fi
status_full=$(status_of "$R" | cut -c1-30)
"$TRAIN" --resume "$R" >>"$R.log" 2>&1
row "disk full ($how)" "exit $code, '${err:-no error text}', STATUS '$status_full…', checkpoint kept at step $kept; resumed with room: $(status_of "$R")" "$(compare "$R")"
mountpoint -q "$R" && { cp -a "$R" "$R.saved"; umount "$R"; rm -rf "$R"; mv "$R.saved" "$R"; }

# 5. Two resumes at once: one trains, the other is refused and changes nothing.
R=$WORK/double-resume
"$TRAIN" "${RUN_ARGS[@]}" --out "$R" >"$R.log" 2>&1 &
PID=$!
wait_for_evals "$R" 3
kill -TERM $PID; wait $PID
"$TRAIN" --resume "$R" >"$R.a.log" 2>&1 &
A=$!
"$TRAIN" --resume "$R" >"$R.b.log" 2>&1 &
B=$!
wait $A; ca=$?
wait $B; cb=$?
refused=$(cat "$R.a.log" "$R.b.log" | grep -c 'is in use by another rescnn-train')
row "two --resume at once" "exits $ca and $cb, $refused refused as in use; $(status_of "$R")" "$(compare "$R")"

# 6. Two fresh runs with the same --out.
R=$WORK/double-start
"$TRAIN" "${RUN_ARGS[@]}" --out "$R" >"$R.a.log" 2>&1 &
A=$!
"$TRAIN" "${RUN_ARGS[@]}" --out "$R" >"$R.b.log" 2>&1 &
B=$!
wait $A; ca=$?
wait $B; cb=$?
why=$(cat "$R.a.log" "$R.b.log" | grep -m1 -o -e 'is in use by another rescnn-train' -e 'already exists and is not empty')
row "two fresh runs, one --out" "exits $ca and $cb; the second: '$why'; $(status_of "$R")" "$(compare "$R")"

echo
echo "| scenario | outcome | lost |"
echo "|---|---|---|"
printf '%s\n' "${ROWS[@]}"
[ -n "$KEEP" ] || rm -rf "$WORK"
exit $FAILED
