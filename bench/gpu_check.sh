#!/usr/bin/env bash
# The GPU path, measured in one go (sized for under 8 minutes on one GPU; not yet run on one): prints each figure
# and writes them all to one JSON file, bench/results/gpu-check-DATE.json (--out DIR: in DIR instead).
#
#   bash bench/gpu_check.sh              # on a machine with a CUDA GPU
#   bash bench/gpu_check.sh --dry-run    # the same steps on the CPU with tiny settings: checks the script works
#
# 1. training step: gpt2-124m, context 1024, batch 16, bfloat16 autocast + --compile: tokens/s and MFU against the
#    bfloat16 matmul peak measured in the same run (bench/training.py);
# 2. the default 10-epoch reference run (`minigpt-tui train`, gpt2-124m, batch 2, lr 4e-4): wall time and losses;
# 3. chat: first-token latency and decode tokens/s, float32 and bfloat16 weights (bench/generation.py);
# 4. a `torchrun --nproc_per_node=1` smoke run (NCCL; gloo in the dry run);
# 5. resume on the device: 10 steps in one go against 5, a checkpoint, and 5 more; their losses must agree (bitwise
#    on a CPU, to 1e-2 on a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry_run=1 ;;
        --out) out="$2"; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

python=${PYTHON:-python}
work="$(mktemp -d /tmp/gpu-check.XXXXXX)"
trap 'rm -rf "$work"' EXIT
export MINIGPT_BENCH_RESULTS="$work/results"  # the bench scripts' own JSON files, gathered into one at the end
if [ -z "$out" ]; then out=bench/results; fi
mkdir -p "$out"
if [ "$dry_run" = 1 ]; then
    device=cpu
    json="$out/gpu-check-dry-run.json"
    step_args=(--preset tiny --context-length 32 --batch-size 2 --steps 2 --dtype bfloat16)
    run_args=(--preset tiny --context-length 32 --max-steps 4 --eval-freq 2 --eval-batches 1)
    generation_args=(--preset tiny --new-tokens 8 --repeats 1 --agreement-tokens 4)
    resume_args=(--preset tiny --context-length 32 --eval-batches 1)
else
    device=cuda
    json="$out/gpu-check-$(date +%Y%m%d-%H%M%S).json"
    "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU: use --dry-run")'
    step_args=(--preset gpt2-124m --context-length 1024 --batch-size 16 --steps 10 --warmup 3 --dtype bfloat16
        --compile)
    run_args=()
    generation_args=(--preset gpt2-124m --repeats 3)
    resume_args=()
fi

say() { printf '\n=== %s\n' "$*"; }

say "1. training step (bench/training.py ${step_args[*]})"
"$python" bench/training.py --device "$device" --no-reference "${step_args[@]}" | tee "$work/training.txt"

say "2. the default reference run: minigpt-tui train ${run_args[*]}"
start=$EPOCHREALTIME
"$python" -m minigpt_tui.cli train --device "$device" --out "$work/run" "${run_args[@]}" | tee "$work/run.txt"
echo "$start $EPOCHREALTIME" > "$work/run_times"

say "3. chat: first token and decode speed (bench/generation.py ${generation_args[*]})"
"$python" bench/generation.py --device "$device" --no-reference "${generation_args[@]}" | tee "$work/generation.txt"

say "4. torchrun --nproc_per_node=1 smoke run"
"$python" -m torch.distributed.run --standalone --nproc_per_node=1 -m core.train --device "$device" \
    --preset tiny --context-length 32 --max-steps 4 --eval-freq 2 --eval-batches 1 --out "$work/torchrun" \
    | tee "$work/torchrun.txt"

say "5. resume on $device: 10 steps in one go, and 5 + 5 from a checkpoint"
common=(--device "$device" --eval-freq 5 --save-every 5 "${resume_args[@]}")
"$python" -m core.train --max-steps 10 --out "$work/whole" "${common[@]}" >/dev/null
"$python" -m core.train --max-steps 5 --out "$work/halves" "${common[@]}" >/dev/null
"$python" -m core.train --device "$device" --max-steps 10 --resume "$work/halves/last.pt" >/dev/null

"$python" - "$work" "$json" "$device" "$dry_run" <<'EOF'
"""Gather the figures of the five steps into one JSON file and print them."""
import json
import re
import sys
from pathlib import Path

work, json_path, device, dry_run = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"


def written(text_file):  # the JSON a bench script wrote ("wrote PATH" is its last line)
    return json.loads(Path(re.findall(r"^wrote (.+)$", (work / text_file).read_text(), re.MULTILINE)[-1]).read_text())


def metrics(run):
    return [json.loads(line) for line in (work / run / "metrics.jsonl").read_text().splitlines()]


training = written("training.txt")
ours = training["implementations"]["ours"]
generation = written("generation.txt")
run = metrics("run")
whole, halves = metrics("whole"), metrics("halves")
difference = max(abs(a[k] - b[k]) for a, b in zip(whole, halves, strict=True) for k in ("train_loss", "val_loss"))
torchrun = metrics("torchrun")
run_start, run_end = map(float, (work / "run_times").read_text().split())
tolerance = 0.0 if device == "cpu" else 1e-2
result = {
    "device": device,
    "dry_run": dry_run,
    "gpu": training.get("gpu"),
    "torch": training["torch"],
    "training_step": {
        "preset": training["preset"],
        "context_length": training["context_length"],
        "batch_size": training["batch_size"],
        "dtype": training["dtype"],
        "compile": training["compile"],
        "tokens_per_s": ours["tokens_per_s"],
        "mfu": ours["mfu"],
        "matmul_peak_flops": training["matmul_peak_flops"],
        "peak_memory_bytes": ours["peak_memory_bytes"],
    },
    "reference_run": {
        "wall_s": run_end - run_start,
        "final_train_loss": run[-1]["train_loss"],
        "final_val_loss": run[-1]["val_loss"],
    },
    "chat": {
        name: {"first_token_s": row["first_token_s"], "tokens_per_s": row["tokens_per_s"]}
        for name, row in generation["methods"].items()
        if name.startswith("cached")
    },
    "chat_bfloat16_agreement": generation["bfloat16_agreement"],
    "torchrun_smoke": {"steps": torchrun[-1]["global_step"], "final_val_loss": torchrun[-1]["val_loss"]},
    # Bitwise on a CPU; a GPU's atomic adds (the embedding's backward) may differ in the last bits.
    "resume": {"evaluations": len(whole), "max_loss_difference": difference, "agrees": difference <= tolerance},
}
json_path.write_text(json.dumps(result, indent=2) + "\n")
step = result["training_step"]
print(f"\n=== summary ({device}{', dry run' if dry_run else ''})")
print(f"training step: {step['tokens_per_s']:,.0f} tokens/s, MFU {step['mfu']:.0%} of the {step['dtype']} matmul peak")
print(f"reference run: {result['reference_run']['wall_s']:.0f} s, final val loss {run[-1]['val_loss']:.3f}")
for name, row in result["chat"].items():
    print(f"chat, {name}: first token {row['first_token_s'] * 1000:.0f} ms, {row['tokens_per_s']:.1f} tokens/s")
print(f"torchrun smoke run: {result['torchrun_smoke']['steps']} steps")
print(f"resume: largest loss difference {difference:.2e} ({'agrees' if result['resume']['agrees'] else 'DIFFERS'})")
print(f"wrote {json_path}")
if not result["resume"]["agrees"]:
    sys.exit("a resumed run's losses differ from the uninterrupted run's")
EOF
