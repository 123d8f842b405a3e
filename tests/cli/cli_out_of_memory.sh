#!/usr/bin/env bash
# A request too large for the machine fails with a one-line error that names
# the requested tensor and its size in bytes, not an abort or an OOM kill.
source "$(dirname "$0")/common.bash" "$@"

expect_ok setup train --out m.safetensors --steps 5 --batch 16 --width 8 --hidden-layers 1
# 10^11 points x 2 dims of float64 source noise = 1.6 * 10^12 bytes.
expect_error sample_too_many "cannot allocate float64[100000000000, 2]" \
  sample --model m.safetensors --n 100000000000 --out x.npy
contains sample_bytes sample_too_many.err "1600000000000 bytes"
check sample_no_output test ! -e x.npy
finish
