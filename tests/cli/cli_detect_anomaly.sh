#!/usr/bin/env bash
# `tide train --detect-anomaly` stops at the first NaN or Inf with a one-line
# error naming the op, its input shapes and the module; without the flag the
# same diverging run is not stopped by anomaly checks.
source "$(dirname "$0")/common.bash" "$@"

# lr = 1e30: Adam's first update moves every weight by about lr (its step is
# lr * m / sqrt(v), and m / sqrt(v) = +-1 after one step), so in step 2 the
# first Linear (net.0) gives pre-activations ~1e30 (finite in float32) and the
# second (net.2) sums products of ~1e30 * 1e30 = 1e60 > FLT_MAX: Inf.
diverge=(train --out bad.safetensors --steps 5 --batch 16 --width 8 --hidden-layers 2
  --lr 1e30 --seed 1)

expect_error anomaly "detect_anomaly: 'linear' in module 'net.2' produced" \
  "${diverge[@]}" --detect-anomaly
contains anomaly_shapes anomaly.err "its inputs: (float32[16, 8], float32[8, 8], float32[8])"
contains anomaly_pass anomaly.err "in the forward pass"
check anomaly_no_model test ! -e bad.safetensors

# Off by default: the run completes (with a useless model).
expect_ok no_anomaly "${diverge[@]}"

# A healthy run is unaffected by the flag.
expect_ok healthy train --out good.safetensors --steps 20 --batch 16 --width 8 \
  --hidden-layers 2 --detect-anomaly
finish
