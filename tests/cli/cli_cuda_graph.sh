#!/usr/bin/env bash
# --cuda-graph and --device on train, sample, loglik, eval and plot. On the CPU the
# static (graph-ready) step runs eagerly: sampling and log-likelihoods must
# equal the normal solve exactly (the same arithmetic), and training must
# give the same model to float rounding. Without a GPU, --device cuda must
# fail with a one-line error; with one, it must work.
source "$(dirname "$0")/common.bash" "$@"

SMALL=(--steps 20 --batch 32 --width 16 --hidden-layers 2 --seed 3)

# --- help -----------------------------------------------------------------------
for cmd in train sample loglik eval plot; do
  expect_ok "help_$cmd" "$cmd" --help
  contains "help_${cmd}_cuda_graph" "help_$cmd.out" "--cuda-graph"
  contains "help_${cmd}_device" "help_$cmd.out" "--device"
done

# --- train ------------------------------------------------------------------------
expect_ok train train --out m.safetensors "${SMALL[@]}"
expect_ok train_graph train --out g.safetensors "${SMALL[@]}" --cuda-graph
contains train_graph_reports train_graph.out "step 20/20"
check train_graph_written test -s g.safetensors
# Same model up to rounding: compare the samples both give from one noise.
write_npy noise.npy '<f4' '(3, 2)' 0.5 -1 1.5 0.25 -0.75 2
expect_ok sample_m sample --model m.safetensors --noise noise.npy --solver rk4 --steps 8 --out m.npy
expect_ok sample_g sample --model g.safetensors --noise noise.npy --solver rk4 --steps 8 --out g.npy
paste <(npy_values m.npy) <(npy_values g.npy) >pairs.txt
check train_graph_same_model awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 1e-4) exit 1 }' pairs.txt
check train_graph_values_present test "$(wc -l <pairs.txt)" -eq 6

# --- sample: identical with and without --cuda-graph ------------------------------
expect_ok sample_plain sample --model m.safetensors --n 50 --solver heun --steps 12 \
  --out a.npy --trajectory ta.npy
expect_ok sample_graph sample --model m.safetensors --n 50 --solver heun --steps 12 \
  --out b.npy --trajectory tb.npy --cuda-graph --device cpu
check sample_graph_identical cmp -s <(npy_values a.npy) <(npy_values b.npy)
check sample_graph_trajectory_identical cmp -s <(npy_values ta.npy) <(npy_values tb.npy)
check sample_graph_trajectory_shape test "$(npy_shape tb.npy)" = "13, 50, 2"

# --- loglik: identical with and without --cuda-graph ------------------------------
expect_ok loglik_plain loglik --model m.safetensors --data moons --n 40 --solver rk4 --steps 10 \
  --out la.npy
expect_ok loglik_graph loglik --model m.safetensors --data moons --n 40 --solver rk4 --steps 10 \
  --out lb.npy --cuda-graph
check loglik_graph_identical cmp -s <(npy_values la.npy) <(npy_values lb.npy)
contains loglik_graph_nfe loglik_graph.out "NFE        40"

# --- eval: the same report with and without --cuda-graph --device cpu ---------------
expect_ok eval_plain eval --model m.safetensors --data 8gaussians --n 60 --solver rk4 --steps 6
expect_ok eval_graph eval --model m.safetensors --data 8gaussians --n 60 --solver rk4 --steps 6 \
  --cuda-graph --device cpu
grep -v '^time' eval_plain.out >eval_plain.report
grep -v '^time' eval_graph.out >eval_graph.report
check eval_graph_identical cmp -s eval_plain.report eval_graph.report
contains eval_graph_kl eval_graph.out "KL "
contains eval_graph_w2 eval_graph.out "W2 "

# --- plot: the same density image with and without --cuda-graph --device cpu -------
expect_ok plot_plain plot --model m.safetensors --density --resolution 10 --steps 4 --out p.png
expect_ok plot_graph plot --model m.safetensors --density --resolution 10 --steps 4 --out q.png \
  --cuda-graph --device cpu
check plot_graph_identical cmp -s p.png q.png
check plot_graph_written test -s q.png

# --- errors -------------------------------------------------------------------------
expect_error sample_graph_dopri5 "--cuda-graph needs a fixed-step --solver" \
  sample --model m.safetensors --n 5 --cuda-graph
expect_status sample_graph_dopri5 1
expect_error loglik_graph_dopri5 "--cuda-graph needs a fixed-step --solver" \
  loglik --model m.safetensors --data moons --n 5 --solver dopri5 --cuda-graph
expect_error eval_graph_dopri5 "--cuda-graph needs a fixed-step --solver" \
  eval --model m.safetensors --data moons --n 5 --cuda-graph
expect_error plot_graph_dopri5 "--cuda-graph needs a fixed-step --solver" \
  plot --model m.safetensors --density --out r.png --solver dopri5 --cuda-graph
expect_error bad_device "--device: cuda:1 not in" sample --model m.safetensors --device cuda:1
for cmd in sample loglik eval plot; do
  case $cmd in
    sample) args=(--n 5 --solver euler --steps 2) ;;
    plot) args=(--density --resolution 4 --out d.png --solver euler --steps 2) ;;
    *) args=(--data moons --n 5 --solver euler --steps 2) ;;
  esac
  run "device_cuda_$cmd" "$cmd" --model m.safetensors "${args[@]}" --device cuda --cuda-graph
  if [[ $status -eq 0 ]]; then
    pass  # a GPU is present and the captured solve ran
  else
    expect_error "device_cuda_$cmd" "--device cuda: not available" \
      "$cmd" --model m.safetensors "${args[@]}" --device cuda --cuda-graph
  fi
done

finish
