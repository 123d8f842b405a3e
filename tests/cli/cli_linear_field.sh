#!/usr/bin/env bash
# `tide sample` and `tide loglik` against closed forms, on a hand-written model
# file: one Linear layer (--hidden-layers 0) with weight [[a, 0, c], [0, a, 0]]
# and zero bias, i.e. the velocity field (t is the last input column)
#
#     v(x, y, t) = (a x + c t, a y).
#
# Its flow from t = 0 to 1 is  x1 = e^a x0 + c (e^a - 1 - a) / a^2,  y1 = e^a y0,
# the divergence is 2a everywhere, so for a standard normal source
#
#     log p1(x1, y1) = log N(x0, y0; 0, I) - 2a.
#
# Rademacher probes e give e^T J e = a (e1^2 + e2^2) = 2a exactly, so the
# Hutchinson estimate must equal the exact value here. The model and the
# inputs are written with perl, independently of Tide's writers.
source "$(dirname "$0")/common.bash" "$@"

A=0.5
C=1.0

# write_model FILE WITH_METADATA: the safetensors file, F32 tensors.
write_model() {
  perl -e '
    my ($path, $a, $c, $meta) = @ARGV;
    my $bias = pack("f<*", 0, 0);
    my $weight = pack("f<*", $a, 0, $c, 0, $a, 0);
    my $m = $meta ? q("tide.arch":"mlp","tide.dim":"2","tide.width":"8",)
                  . q("tide.hidden_layers":"0","tide.activation":"selu",) : "";
    my $h = q({"net.0.bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)
          . q("net.0.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[8,32]},)
          . q("__metadata__":{) . $m . q("format":"pt"}});
    $h .= " " x ((8 - length($h) % 8) % 8);
    open(my $f, ">:raw", $path) or die;
    print $f pack("Q<", length $h) . $h . $bias . $weight;' "$1" "$A" "$C" "$2"
}
write_model linear.safetensors 1
write_model plain.safetensors 0

# Source points x0 [3, 2].
write_npy x0.npy '<f4' '(3, 2)' 1 2 -1 0.5 0 -1.5

# The expected flow map and log-density, in awk.
expected_x1() {  # prints x1 and y1 per row of x0
  npy_values x0.npy | paste - - | awk -v a=$A -v c=$C '{
    e = exp(a); printf "%.12g\n%.12g\n", e * $1 + c * (e - 1 - a) / (a * a), e * $2 }'
}
expected_logp() {  # log p1 at the points x1 = expected_x1
  npy_values x0.npy | paste - - | awk -v a=$A '{
    printf "%.12g\n", -($1 * $1 + $2 * $2) / 2 - log(2 * 3.141592653589793) - 2 * a }'
}
# compare_lists NAME FILE_ACTUAL FILE_EXPECTED TOL
compare_lists() {
  local n_actual n_expected
  n_actual=$(wc -l <"$2")
  n_expected=$(wc -l <"$3")
  if [[ $n_actual -ne $n_expected ]]; then
    failed "$1: $n_actual values, expected $n_expected"
    return
  fi
  local i=0
  while read -r actual expected; do
    i=$((i + 1))
    close_to "$1[$i]" "$actual" "$expected" "$4"
  done < <(paste "$2" "$3")
}
expected_x1 >x1.expected
expected_logp >logp.expected

# --- sampling: x1 from the given x0 -----------------------------------------
for solver in rk4 dopri5; do
  expect_ok "sample_$solver" sample --model linear.safetensors --noise x0.npy --solver $solver \
    --steps 50 --rtol 1e-7 --atol 1e-7 --out "x1_$solver.npy" --trajectory "traj_$solver.npy"
  check "sample_${solver}_shape" test "$(npy_shape "x1_$solver.npy")" = "3, 2"
  npy_values "x1_$solver.npy" >"x1_$solver.actual"
  compare_lists "sample_${solver}_x1" "x1_$solver.actual" x1.expected 2e-5
  contains "sample_${solver}_nfe" "sample_$solver.out" "NFE"
done
# Euler with 50 steps is first order: visibly off, but within a loose bound.
expect_ok sample_euler sample --model linear.safetensors --noise x0.npy --solver euler \
  --steps 50 --out x1_euler.npy
npy_values x1_euler.npy >x1_euler.actual
compare_lists sample_euler_x1 x1_euler.actual x1.expected 0.1
check sample_euler_nfe grep -q "NFE 50 " sample_euler.out  # one evaluation per step

# The trajectory starts at x0 and ends at x1: [steps + 1, 3, 2] for rk4.
check traj_shape test "$(npy_shape traj_rk4.npy)" = "51, 3, 2"
npy_values traj_rk4.npy >traj.values
check traj_start diff <(head -n 6 traj.values) <(npy_values x0.npy)
check traj_end diff <(tail -n 6 traj.values) x1_rk4.actual
check traj_dopri5_shape test "$(npy_shape traj_dopri5.npy)" = "101, 3, 2"

# --- log-likelihoods at the exact x1 -----------------------------------------
# The data file holds the closed-form x1 in float64.
write_npy x1.npy '<f8' '(3, 2)' $(cat x1.expected)
expect_ok loglik_exact loglik --model linear.safetensors --data x1.npy --dtype float64 \
  --solver dopri5 --rtol 1e-10 --atol 1e-10 --out logp.npy
check loglik_shape test "$(npy_shape logp.npy)" = "3"
check loglik_dtype test "$(npy_descr logp.npy)" = "<f8"
npy_values logp.npy >logp.actual
compare_lists loglik_exact_logp logp.actual logp.expected 1e-7
# The printed mean NLL and bits/dim follow from the same values.
mean_nll=$(awk '{ s -= $1 } END { printf "%.4f", s / NR }' logp.expected)
contains loglik_mean_nll loglik_exact.out "mean NLL   $mean_nll nats"
bpd=$(awk -v m="$mean_nll" 'BEGIN { printf "%.4f", m / (2 * log(2)) }')
contains loglik_bits_per_dim loglik_exact.out "bits/dim   $bpd"
contains loglik_nfe loglik_exact.out "NFE"

# Hutchinson with Rademacher probes is exact for a linear field.
expect_ok loglik_hutchinson loglik --model linear.safetensors --data x1.npy --dtype float64 \
  --solver rk4 --steps 40 --divergence hutchinson --probes 4 --out logp_h.npy
npy_values logp_h.npy >logp_h.actual
compare_lists loglik_hutchinson_logp logp_h.actual logp.expected 1e-6

# float32 with fixed steps: close, not exact.
expect_ok loglik_f32 loglik --model linear.safetensors --data x1.npy --solver rk4 --steps 40 \
  --out logp32.npy
npy_values logp32.npy >logp32.actual
compare_lists loglik_f32_logp logp32.actual logp.expected 1e-4

# --- a plain state dict (no Tide metadata) needs --arch ----------------------
expect_error plain_without_arch "no architecture metadata" \
  sample --model plain.safetensors --noise x0.npy
expect_ok plain_with_arch sample --model plain.safetensors --arch mlp --dim 2 \
  --hidden-layers 0 --noise x0.npy --solver rk4 --steps 50 --out x1_plain.npy
check plain_same_samples cmp -s x1_plain.npy x1_rk4.npy
expect_error plain_wrong_arch "net.2.weight" \
  sample --model plain.safetensors --arch mlp --dim 2 --hidden-layers 1 --noise x0.npy
expect_error plain_wrong_dim "net.0.weight" \
  loglik --model plain.safetensors --arch mlp --dim 3 --hidden-layers 0 --data x1.npy

finish
