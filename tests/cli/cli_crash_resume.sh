#!/usr/bin/env bash
# Crash-safe training: `tide train` is killed with SIGKILL at many random
# moments (seeded), about half of them aimed at checkpoint writes. After each
# kill the checkpoint on disk must be a complete safetensors file (checked here
# with perl, independently of Tide's reader) that Tide loads, its step must
# never go backwards, and `tide train --resume` continues. The run that ends
# after all the kills must write a model and a final checkpoint byte-identical
# to those of an uninterrupted run with the same options, and leave no
# temporary files behind.
#
# Knobs (environment): TIDE_CRASH_KILLS (default 24 kill points),
# TIDE_CRASH_SEED (default 20261129).
source "$(dirname "$0")/common.bash" "$@"

kill_points=${TIDE_CRASH_KILLS:-24}
RANDOM=${TIDE_CRASH_SEED:-20261129}

# A small model trained with every piece of resumable state: Adam moments, a
# cosine schedule, EMA, gradient clipping, the generator (data and noise
# draws). A checkpoint after every step makes writes frequent.
common=(--data 8gaussians --width 16 --hidden-layers 2 --batch 16 --lr 1e-2 --seed 7
  --lr-schedule cosine --ema-decay 0.99 --grad-clip 1 --checkpoint-every 1 --log-every 100000)
steps=1200

# check_safetensors FILE: prints the checkpoint's "step" if FILE is a complete
# safetensors file (header length, JSON object, every tensor's byte range in
# bounds, data section exactly covered), else exits non-zero with the reason.
check_safetensors() {
  perl -e '
    open(my $f, "<:raw", $ARGV[0]) or die "cannot open: $!\n";
    local $/; my $b = <$f>;
    die "only " . length($b) . " bytes\n" if length($b) < 8;
    my $n = unpack("Q<", substr($b, 0, 8));
    die "header length $n exceeds the file\n" if 8 + $n > length($b);
    my $h = substr($b, 8, $n);
    die "header is not a JSON object\n" unless $h =~ /^\{.*\}\s*$/s;
    my $data = length($b) - 8 - $n;
    my ($end, $count, $step) = (0, 0, undef);
    while ($h =~ /"([^"]+)"\s*:\s*\{([^}]*)\}/g) {
      my ($name, $body) = ($1, $2);
      next if $name eq "__metadata__";
      my ($s, $e) = $body =~ /"data_offsets"\s*:\s*\[\s*(\d+)\s*,\s*(\d+)\s*\]/
        or die "tensor $name has no data_offsets\n";
      die "tensor $name: bytes [$s, $e) outside the $data data bytes\n" if $s > $e || $e > $data;
      $end = $e if $e > $end;
      $count++;
      $step = unpack("q<", substr($b, 8 + $n + $s, 8)) if $name eq "step";
    }
    die "no tensors\n" unless $count;
    die "data section has $data bytes, tensors cover $end\n" unless $end == $data;
    die "no step tensor\n" unless defined $step;
    print "$step\n";' "$1"
}

# Temporary files of atomic writes next to the model or checkpoint.
temp_files() { compgen -G '.model.*.tmp-*' || true; }
ckpt_temp_files() { compgen -G '.model.ckpt.tmp-*' || true; }

# --- the uninterrupted reference -------------------------------------------------
start=$(date +%s.%N)
expect_ok reference train "${common[@]}" --steps $steps --out reference.safetensors
reference_seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
# The kills land at a random moment after a run's first checkpoint write
# (so start-up time, which varies with the machine's load, does not count),
# within the time of 8 steps: fsync makes the speed depend on the file system
# (70..1,400 steps/s seen), so it is scaled by the reference run. With the
# polling, a run gets through about 10-20 steps before its kill, so most of
# the training is left for the final resume.
max_delay_ms=$(awk -v t="$reference_seconds" -v n=$steps \
  'BEGIN { d = 8 * 1000 * t / n; if (d < 2) d = 2; printf "%d", d }')

# --- kill, check, resume ----------------------------------------------------------
killed=0 mid_write=0 finished_early=0 no_checkpoint=0 aimed=0 last_step=0
for ((k = 0; k < kill_points; k++)); do
  resume=()
  [[ -f model.ckpt ]] && resume=(--resume)
  before=$(ckpt_temp_files)
  "$TIDE" train "${common[@]}" --steps $steps --out model.safetensors "${resume[@]}" \
    >"run$k.out" 2>"run$k.err" &
  pid=$!
  # Wait for this run's first checkpoint write (a temporary file that was not
  # there before; bash builtins only, so the poll is fast), then a random
  # moment more.
  for ((poll = 0; poll < 200000; poll++)); do
    started=0
    for file in $(ckpt_temp_files); do
      [[ $'\n'$before$'\n' == *$'\n'$file$'\n'* ]] || started=1
    done
    ((started)) && break
    kill -0 $pid 2>/dev/null || break
  done
  delay_ms=$((RANDOM % max_delay_ms))
  sleep "$(awk -v ms=$delay_ms 'BEGIN { printf "%.3f", ms / 1000 }')"
  if ((k % 2 == 1)); then
    # Aim at a checkpoint write: kill as soon as a temporary file shows up.
    aimed=$((aimed + 1))
    for ((poll = 0; poll < 200000; poll++)); do
      [[ -n $(compgen -G '.model.ckpt.tmp-*') ]] && break
      kill -0 $pid 2>/dev/null || break
    done
  fi
  kill -KILL $pid 2>/dev/null
  { wait $pid; } 2>/dev/null  # without bash's "Killed" notice
  status=$?
  if [[ $status -eq 0 ]]; then
    finished_early=$((finished_early + 1))
  elif [[ $status -eq 137 ]]; then
    killed=$((killed + 1))
  else
    failed "run $k: exited with $status before the kill:"
    sed 's/^/    /' "run$k.out" "run$k.err"
    break
  fi
  # A temporary file that was not there before: the kill landed between the
  # checkpoint's creation and its rename.
  for file in $(ckpt_temp_files); do
    grep -qxF -- "$file" <<<"$before" || mid_write=$((mid_write + 1))
  done

  if [[ ! -f model.ckpt ]]; then
    no_checkpoint=$((no_checkpoint + 1))
    continue
  fi
  if ! step=$(check_safetensors model.ckpt 2>check.err); then
    failed "kill $k: model.ckpt is not a complete safetensors file: $(cat check.err)"
    break
  fi
  if ((step < last_step || step > steps)); then
    failed "kill $k: checkpoint step $step (previous $last_step, total $steps)"
  fi
  last_step=$step
  # Tide loads every part (model, Adam, schedule, EMA, generator): a resume
  # with --steps 1 restores the checkpoint and has nothing left to train.
  run "verify$k" train "${common[@]}" --steps 1 --resume --checkpoint model.ckpt \
    --out verify.safetensors
  if [[ $status -ne 0 ]] || ! grep -q "nothing to do" "verify$k.out"; then
    failed "kill $k: the checkpoint at step $step does not load (status $status):"
    sed 's/^/    /' "verify$k.out" "verify$k.err"
    break
  fi
  pass
done

# --- finish, compare ------------------------------------------------------------
resume=()
[[ -f model.ckpt ]] && resume=(--resume)
expect_ok final train "${common[@]}" --steps $steps --out model.safetensors "${resume[@]}"
check model_bit_identical cmp reference.safetensors model.safetensors
check checkpoint_bit_identical cmp reference.ckpt model.ckpt
check no_temporary_files_left test -z "$(temp_files)"
check enough_kills test $killed -ge $((kill_points * 3 / 4))
check some_kills_mid_write test $mid_write -ge 1

echo "uninterrupted run: $steps steps in $reference_seconds s; kills 0..$max_delay_ms ms after a run's first checkpoint write"
echo "kill points: $killed killed ($mid_write during a checkpoint write, $aimed aimed at" \
  "writes, $no_checkpoint before the first checkpoint), $finished_early finished first;" \
  "last checkpoint before the final resume: step $last_step"
finish
