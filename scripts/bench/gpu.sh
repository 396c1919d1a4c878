#!/usr/bin/env bash
# The one call for the GPU machine (no network, no packages; see scripts/gpu/pack.sh):
#   1. configure + build the runtime only (with the CUDA plugin) in build-gpu/,
#      flatbuffers from vendor/ (carry it);
#   2. synthesize random-weight artifacts with lathe-synth (in build-gpu/synth,
#      never under $OUT: they are large);
#   3. lathe-device-check (CUDA vs CPU) on each; then, for the real-model artifacts
#      carried in gpu-carry/ (scripts/gpu/carry.py), CUDA against the CPU outputs
#      carried with them; then the GEMV bandwidth bench at 7B shapes
#      (lathe-cuda-bench) and lathe-rt inspect/bench/generate on cuda (and a few on
#      cpu for comparison);
#   4. every log and summary.json under $OUT (default ./gpu-out), rewritten after
#      each step so a cut-off run still reports what it did.
# Every step has a time limit and is non-fatal; a missing binary is a skip with
# its reason. The whole run stays inside GPU_BUDGET_S (default 540 s).
#
# Environment:
#   OUT                where logs and summary.json go (default ./gpu-out)
#   GPU_BUDGET_S       overall wall-clock budget in seconds (default 540)
#   LATHE_CUDA_ARCHS   CUDA architectures, e.g. "90" (default: the GPU's compute
#                      capability from nvidia-smi, else CMake's default 80;90)
#   ARTIFACTS          space-separated subset of the names below (default: all)
#   BENCH_SEQS         prefill sequence lengths for bench (default "1 128 512")
#   DECODE_TOKENS      tokens generated per decode benchmark (default 128)
#   CPU_BENCH          1: also bench on the CPU (default 1; only the small models)
#   CARRY_DIR          the carried real models (default ./gpu-carry)
#   SKIP_BUILD=1       reuse build-gpu as it is
#   BUILD_DIR          build folder (default build-gpu)
#   JOBS               build parallelism (default: nproc)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/gpu-out}"
mkdir -p "$OUT/logs" "$OUT/check"
OUT="$(cd "$OUT" && pwd)"
BUILD="${BUILD_DIR:-$ROOT/build-gpu}"
SYNTH="$BUILD/synth"
BIN="$BUILD/bin"
BUDGET="${GPU_BUDGET_S:-540}"
START=$(date +%s)
DEADLINE=$((START + BUDGET))
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 4)}"
BENCH_SEQS="${BENCH_SEQS:-1 128 512}"
DECODE_TOKENS="${DECODE_TOKENS:-128}"
CPU_BENCH="${CPU_BENCH:-1}"

# Artifacts: name shape format [extra lathe-synth args]
ALL_ARTIFACTS=(
  "smollm2.f32 smollm2-135m f32"
  "smollm2.bf16 smollm2-135m bf16"
  "smollm2.int8 smollm2-135m int8"
  "smollm2.int4 smollm2-135m int4"
  "llama7b.f32 llama7b-layer f32"
  "llama7b.bf16 llama7b-layer bf16"
  "llama7b.int8 llama7b-layer int8"
  "llama7b.int4 llama7b-layer int4"
  "minilm.f32 minilm-l6 f32"
  "minilm.int8 minilm-l6 int8"
  "minilm.int4 minilm-l6 int4"
)
SELECTED=()
for a in "${ALL_ARTIFACTS[@]}"; do
  name="${a%% *}"
  if [[ -z "${ARTIFACTS:-}" || " $ARTIFACTS " == *" $name "* ]]; then SELECTED+=("$a"); fi
done

# ---- JSON + step bookkeeping ------------------------------------------------

json_str() {
  local s="$1"
  s="${s//\\/\\\\}"; s="${s//\"/\\\"}"; s="${s//$'\n'/\\n}"; s="${s//$'\r'/}"; s="${s//$'\t'/ }"
  s="$(printf '%s' "$s" | tr -d '\000-\010\013\014\016-\037')"
  printf '"%s"' "$s"
}
STEPS=()      # JSON objects
ENV_JSON="{}"
write_summary() {
  local now; now=$(date +%s)
  {
    printf '{\n  "script": "scripts/bench/gpu.sh",\n  "started": %s,\n  "elapsed_s": %d,\n  "budget_s": %d,\n  "env": %s,\n  "steps": [\n' \
      "$(json_str "$(date -u -d "@$START" +%FT%TZ 2>/dev/null || echo "$START")")" $((now - START)) "$BUDGET" "$ENV_JSON"
    local i
    for ((i = 0; i < ${#STEPS[@]}; ++i)); do
      printf '    %s%s\n' "${STEPS[$i]}" "$([[ $i -lt $((${#STEPS[@]} - 1)) ]] && echo ,)"
    done
    printf '  ]\n}\n'
  } > "$OUT/summary.json.tmp" && mv "$OUT/summary.json.tmp" "$OUT/summary.json"
}
add_step() { # name status rc seconds log note metrics-json
  STEPS+=("{\"name\": $(json_str "$1"), \"status\": \"$2\", \"rc\": $3, \"seconds\": $4, \"log\": $(json_str "$5"), \"note\": $(json_str "$6"), \"metrics\": ${7:-"{}"}}")
  write_summary
}
skip() { # name reason
  echo "-- skip $1: $2"
  add_step "$1" skipped -1 0 "" "$2" "{}"
}

# Metrics from a step's log (bench / generate / synth / device check lines).
metrics_of() {
  local log="$1" m=() v
  v=$(sed -n 's/^latency *median \([0-9.]*\) ms.*/\1/p' "$log" | tail -1); [[ -n "$v" ]] && m+=("\"median_ms\": $v")
  v=$(sed -n 's/^latency.*min \([0-9.]*\) ms.*/\1/p' "$log" | tail -1); [[ -n "$v" ]] && m+=("\"min_ms\": $v")
  v=$(sed -n 's/^throughput *\([0-9.]*\) inferences.*/\1/p' "$log" | tail -1); [[ -n "$v" ]] && m+=("\"inferences_per_s\": $v")
  v=$(sed -n 's/.*prefill *[0-9]* tokens in [0-9.]* s: \([0-9.]*\) tokens\/s.*/\1/p' "$log" | tail -1); [[ -n "$v" ]] && m+=("\"prefill_tokens_per_s\": $v")
  v=$(sed -n 's/.*decode *[0-9]* tokens in [0-9.]* s: \([0-9.]*\) tokens\/s.*/\1/p' "$log" | tail -1); [[ -n "$v" ]] && m+=("\"decode_tokens_per_s\": $v")
  v=$(sed -n 's/.*(\([0-9.]*\) ms\/token).*/\1/p' "$log" | tail -1); [[ -n "$v" ]] && m+=("\"ms_per_token\": $v")
  v=$(sed -n 's/^peak RSS *\([0-9.]*\) MiB.*/\1/p' "$log" | tail -1); [[ -n "$v" ]] && m+=("\"peak_rss_mib\": $v")
  local IFS=,
  printf '{%s}' "${m[*]}"
}

# run_step NAME LIMIT_S CMD... : runs CMD under timeout with its output in logs/NAME.log.
LAST_RC=0
run_step() {
  local name="$1" limit="$2"; shift 2
  local log="$OUT/logs/$name.log" left=$((DEADLINE - $(date +%s)))
  if ((left < 15)); then skip "$name" "out of the ${BUDGET}s budget"; LAST_RC=-1; return 1; fi
  ((limit > left - 10)) && limit=$((left - 10))
  local t0 t1 rc status note
  t0=$(date +%s.%N)
  { echo "\$ $*"; echo "# limit ${limit}s, $(date -u +%FT%TZ)"; timeout --kill-after=10 "$limit" "$@"; } > "$log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  local secs; secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
  case $rc in
    0) status=ok ;;
    124|137) status=timeout ;;
    77) status=skipped ;;
    *) status=failed ;;
  esac
  note="$(grep -v '^[#$]' "$log" | grep -v '^\s*$' | tail -1 | cut -c1-300)"
  printf -- '-- %-40s %-8s rc=%-3s %7ss  %s\n' "$name" "$status" "$rc" "$secs" "$(echo "$note" | cut -c1-110)"
  add_step "$name" "$status" "$rc" "$secs" "logs/$name.log" "$note" "${STEP_METRICS:-$(metrics_of "$log")}"
  STEP_METRICS=""
  LAST_RC=$rc
  return $((rc == 0 ? 0 : 1))
}
need() { # name binary -> 0 when present, else a skip
  if [[ -x "$2" ]]; then return 0; fi
  skip "$1" "$(basename "$2") was not built ($2 missing; see logs/build*.log)"
  return 1
}

# ---- 0. The machine ---------------------------------------------------------

{
  echo "date: $(date -u +%FT%TZ)"; echo "host: $(hostname)"; uname -a
  echo "cpus: $(nproc)"; free -g 2>/dev/null | head -2
  command -v nvidia-smi >/dev/null && nvidia-smi
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,compute_cap,memory.total,clocks.max.memory,driver_version --format=csv
  NVCC="$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)"; [[ -n "$NVCC" ]] && "$NVCC" --version
  cmake --version | head -1; c++ --version | head -1
  command -v ninja >/dev/null && echo "ninja $(ninja --version)"
} > "$OUT/logs/machine.log" 2>&1
GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
CAP="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')"
ARCHS="${LATHE_CUDA_ARCHS:-$CAP}"
ENV_JSON="{\"gpu\": $(json_str "${GPU_NAME:-none}"), \"compute_cap\": $(json_str "${CAP:-}"), \"cuda_archs\": $(json_str "${ARCHS:-cmake default}"), \"cpus\": $(nproc), \"host\": $(json_str "$(hostname)"), \"git\": $(json_str "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)")}"
echo "gpu.sh: ${GPU_NAME:-no GPU} (sm_${CAP:-?}), $(nproc) CPUs, archs ${ARCHS:-default}, budget ${BUDGET}s, out $OUT"
write_summary

# ---- 1. Build ---------------------------------------------------------------

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  # No CUDA emulator there: the real device is the point.
  CMAKE_ARGS=(-S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DLATHE_BUILD_COMPILER=OFF -DLATHE_BUILD_TESTS=OFF -DLATHE_BUILD_CUDA_EMU=OFF)
  [[ -n "$ARCHS" ]] && CMAKE_ARGS+=("-DCMAKE_CUDA_ARCHITECTURES=$ARCHS")
  if [[ ! -f "$BUILD/CMakeCache.txt" ]] && command -v ninja >/dev/null; then CMAKE_ARGS+=(-G Ninja); fi
  if ! command -v flatc >/dev/null && [[ ! -f "$ROOT/vendor/lathe_artifact_generated.h" ]]; then
    echo "gpu.sh: no flatc and no vendor/: run scripts/gpu/pack.sh here and carry [\"vendor\"]"
  fi
  run_step configure 120 cmake "${CMAKE_ARGS[@]}"
  # The essentials first, so a CUDA compile error does not cost the CPU tools.
  run_step build-tools 240 cmake --build "$BUILD" -j "$JOBS" --target lathe-synth lathe-rt
  # Then everything (the plugin, lathe-device-check, ...), keeping going past failures.
  if grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja' "$BUILD/CMakeCache.txt" 2>/dev/null; then KEEP=(-- -k 0); else KEEP=(-- -k); fi
  run_step build-all 420 cmake --build "$BUILD" -j "$JOBS" "${KEEP[@]}"
  grep -E 'error|Error' "$OUT/logs/build-all.log" | head -20 > "$OUT/logs/build-errors.txt" || true
fi
ls -la "$BIN" "$BUILD/lib" > "$OUT/logs/binaries.log" 2>&1

# ---- 2. Synthesize ----------------------------------------------------------

mkdir -p "$SYNTH"
READY=()   # "name shape format"
for a in "${SELECTED[@]}"; do
  read -r name shape format extra <<< "$a"
  need "synth-$name" "$BIN/lathe-synth" || continue
  file="$SYNTH/$name.lathe"
  if [[ -f "$file" && -f "$SYNTH/$name.json" && "$file" -nt "$BIN/lathe-synth" ]]; then
    echo "-- synth-$name: reusing $file"
    READY+=("$a")
    continue
  fi
  # shellcheck disable=SC2086
  if run_step "synth-$name" 120 "$BIN/lathe-synth" --shape "$shape" --format "$format" $extra --json "$SYNTH/$name.json" -o "$file"; then
    READY+=("$a")
    cp "$SYNTH/$name.json" "$OUT/check/$name.synth.json"
  fi
done
for a in "${READY[@]}"; do cp -f "$SYNTH/${a%% *}.json" "$OUT/check/${a%% *}.synth.json" 2>/dev/null; done

is_decoder() { [[ "$1" != minilm-* ]]; }

# ---- 3. Device check (CUDA vs CPU) ------------------------------------------

CUDA_DEAD=0
DEAD_WHY="cuda is not usable here"
if [[ -x "$BIN/lathe-device-check" && ${#READY[@]} -gt 0 ]]; then
  # 0: a device is usable, 77: none, else the plugin is missing or broken.
  run_step device-probe 60 "$BIN/lathe-device-check" --probe "$SYNTH/${READY[0]%% *}.lathe"
  if [[ $LAST_RC == 77 ]]; then
    CUDA_DEAD=1
    DEAD_WHY="no usable device: $(grep -v '^[#$]' "$OUT/logs/device-probe.log" | tail -1 | cut -c1-200)"
    echo "gpu.sh: $DEAD_WHY; skipping the cuda steps"
  fi
fi
for a in "${READY[@]}"; do
  read -r name shape format extra <<< "$a"
  [[ $CUDA_DEAD == 1 ]] && { skip "check-$name" "$DEAD_WHY"; continue; }
  need "check-$name" "$BIN/lathe-device-check" || continue
  args=("$SYNTH/$name.lathe" --json "$OUT/check/$name.json")
  is_decoder "$shape" && args+=(--decode 16)
  run_step "check-$name" 180 "$BIN/lathe-device-check" "${args[@]}"
done

# ---- 3b. Carried real models (scripts/gpu/carry.py) against this build machine's CPU outputs

CARRY="${CARRY_DIR:-$ROOT/gpu-carry}"
if [[ -f "$CARRY/manifest.json" ]]; then
  cp -f "$CARRY/manifest.json" "$OUT/check/carry-manifest.json"
  # name decoder rtol, one model per line (python3 is there: PyTorch is installed on the GPU machine)
  CARRIED="$(python3 -c 'import json, sys
for m in json.load(open(sys.argv[1]))["models"]:
    print(m["name"], int(m["decoder"]), m["rtol"])' "$CARRY/manifest.json" 2>/dev/null)"
  [[ -z "$CARRIED" ]] && skip "reference" "cannot read $CARRY/manifest.json with python3"
  while read -r name decoder rtol; do
    [[ -z "$name" ]] && continue
    [[ $CUDA_DEAD == 1 ]] && { skip "reference-$name" "$DEAD_WHY"; continue; }
    need "reference-$name" "$BIN/lathe-device-check" || continue
    args=("$CARRY/$name.lathe" --reference "$CARRY/$name" --rtol "$rtol" --json "$OUT/check/$name.reference.json")
    [[ $decoder == 1 ]] && args+=(--decode 16)
    run_step "reference-$name" 120 "$BIN/lathe-device-check" "${args[@]}"
  done <<< "$CARRIED"
else
  skip "reference" "no $CARRY/manifest.json: run scripts/gpu/carry.py here and carry [\"vendor\", \"gpu-carry\"]"
fi

# ---- 4. Benchmarks ----------------------------------------------------------

# The dequantize-fused GEMV at 7B layer shapes against the memory bandwidth (target: >= 70 %).
if [[ $CUDA_DEAD == 1 ]]; then
  skip "gemv-bench" "$DEAD_WHY"
elif need "gemv-bench" "$BIN/lathe-cuda-bench"; then
  run_step "gemv-bench" 150 "$BIN/lathe-cuda-bench" --json "$OUT/check/gemv.json"
  run_step "gemv-bench-rows4" 90 "$BIN/lathe-cuda-bench" --rows 4 --iterations 50 --formats int8,int4-g32 --json "$OUT/check/gemv-rows4.json"
fi

for a in "${READY[@]}"; do
  read -r name shape format extra <<< "$a"
  need "inspect-$name" "$BIN/lathe-rt" || continue
  run_step "inspect-$name" 60 "$BIN/lathe-rt" inspect "$SYNTH/$name.lathe"
done

decode_metrics() { # log synth-json -> metrics with the weight bandwidth of a decode step
  local log="$1" js="$2" m bytes tps
  m="$(metrics_of "$log")"
  bytes=$(sed -n 's/.*"streamed_bytes_per_step": \([0-9]*\).*/\1/p' "$js" 2>/dev/null)
  tps=$(sed -n 's/.*decode *[0-9]* tokens in [0-9.]* s: \([0-9.]*\) tokens\/s.*/\1/p' "$log" | tail -1)
  if [[ -n "$bytes" && -n "$tps" ]]; then
    local gbs; gbs=$(awk -v b="$bytes" -v t="$tps" 'BEGIN {printf "%.1f", b * t / 1e9}')
    m="${m%\}}"; [[ "$m" != "{" ]] && m+=", "
    m+="\"streamed_bytes_per_step\": $bytes, \"weight_GBps\": $gbs}"
  fi
  printf '%s' "$m"
}

PROMPT_IDS="$(seq -s, 1 32)"
cuda_dead() { # log -> 0 when it says cuda cannot work at all here
  grep -qiE 'no usable CUDA device|no CUDA device|plugin .*could not be loaded|has no --device' "$1" 2>/dev/null
}
# decode DEVICE NAME SHAPE: tokens/s through the KV cache, and the weight bandwidth.
decode() {
  local device="$1" name="$2" log="$OUT/logs/decode-$1-$2.log"
  [[ $device == cuda && $CUDA_DEAD == 1 ]] && { skip "decode-$device-$name" "$DEAD_WHY"; return; }
  need "decode-$device-$name" "$BIN/lathe-rt" || return
  run_step "decode-$device-$name" 120 "$BIN/lathe-rt" generate "$SYNTH/$name.lathe" --device "$device" \
    --prompt-ids "$PROMPT_IDS" --max-new-tokens "$DECODE_TOKENS" --ignore-eos --quiet
  [[ $device == cuda && $LAST_RC != 0 ]] && cuda_dead "$log" && CUDA_DEAD=1
  if [[ -f "$log" && $LAST_RC == 0 ]]; then # the step's metrics again, with the bandwidth
    local last="${STEPS[-1]}"
    STEPS[-1]="${last%\"metrics\": *}\"metrics\": $(decode_metrics "$log" "$SYNTH/$name.json")}"
    write_summary
  fi
}
# bench DEVICE NAME BATCH SEQ [tensor]: prefill latency on synthesized inputs
# (tensor: LATHE_CUDA_GEMM=tensor, the GEMMs on tensor cores).
bench() {
  local device="$1" name="$2" batch="$3" seq="$4" step="bench-$1-$2-b$3s$4${5:+-$5}" iters=20
  local mode=(env LATHE_CUDA_GEMM="${5:-exact}")
  [[ $device == cuda && $CUDA_DEAD == 1 ]] && { skip "$step" "$DEAD_WHY"; return; }
  need "$step" "$BIN/lathe-rt" || return
  ((seq >= 512 || batch > 1)) && iters=10
  [[ $device == cpu ]] && iters=5
  run_step "$step" 90 "${mode[@]}" "$BIN/lathe-rt" bench "$SYNTH/$name.lathe" --device "$device" --batch "$batch" --seq "$seq" \
    --warmup 2 --iterations "$iters"
  [[ $device == cuda && $LAST_RC != 0 ]] && cuda_dead "$OUT/logs/$step.log" && CUDA_DEAD=1
}

# In order of importance (the budget cuts the tail): decode on cuda (the GEMV
# bandwidth), prefill at batch 1, the other shapes, then the CPU for comparison.
for a in "${READY[@]}"; do
  read -r name shape format extra <<< "$a"
  is_decoder "$shape" && decode cuda "$name"
done
# The peer for the decode target: PyTorch fp16 eager on SmolLM2-135M's architecture, same GPU.
if command -v python3 >/dev/null && python3 -c "import torch, transformers" >/dev/null 2>&1; then
  run_step "decode-torch-fp16-smollm2" 150 python3 "$ROOT/scripts/bench/torch_decode.py" --device cuda --dtype fp16 \
    --tokens "$DECODE_TOKENS"
else
  skip "decode-torch-fp16-smollm2" "python3 with torch and transformers not found"
fi
first_seq="$(echo "$BENCH_SEQS" | awk '{print ($2 != "" ? $2 : $1)}')"
for a in "${READY[@]}"; do bench cuda "${a%% *}" 1 "$first_seq"; done
# The same prefill on tensor cores where it changes the GEMM (f32: TF32; bf16: 16-bit operands).
for a in "${READY[@]}"; do
  read -r name shape format extra <<< "$a"
  [[ $format == f32 || $format == bf16 ]] && bench cuda "$name" 1 "$first_seq" tensor
done
for seq in $BENCH_SEQS; do
  for batch in 1 8; do
    [[ $batch == 1 && $seq == "$first_seq" ]] && continue
    for a in "${READY[@]}"; do
      read -r name shape format extra <<< "$a"
      [[ "$shape" == minilm-* && $seq -gt 512 ]] && continue
      bench cuda "$name" "$batch" "$seq"
    done
  done
done
if [[ "$CPU_BENCH" == 1 ]]; then
  for a in "${READY[@]}"; do
    read -r name shape format extra <<< "$a"
    [[ " smollm2.f32 smollm2.int4 llama7b.int4 minilm.f32 " == *" $name "* ]] || continue
    is_decoder "$shape" && decode cpu "$name"
    bench cpu "$name" 1 "$first_seq"
  done
fi

nvidia-smi > "$OUT/logs/nvidia-smi-end.log" 2>&1 || true
write_summary
ok=0; bad=0; skipped=0
for s in "${STEPS[@]}"; do
  case "$s" in *'"status": "ok"'*) ok=$((ok + 1)) ;; *'"status": "skipped"'*) skipped=$((skipped + 1)) ;; *) bad=$((bad + 1)) ;; esac
done
echo "gpu.sh: done in $(($(date +%s) - START))s: $ok ok, $bad failed/timed out, $skipped skipped; $OUT/summary.json"
exit 0
