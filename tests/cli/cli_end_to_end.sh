#!/usr/bin/env bash
# The `tide` commands end to end on tiny inputs: train (built-in data, a .npy
# and a .csv file, resume), sample (with a plot and trajectories), loglik,
# eval and plot. Checks exit codes, output shapes and dtypes, what is printed,
# and the PNG files' signature and size; the numbers themselves are checked
# against closed forms in cli_linear_field.sh.
source "$(dirname "$0")/common.bash" "$@"

SMALL=(--steps 30 --batch 32 --width 16 --hidden-layers 2)

# --- help ---------------------------------------------------------------------
expect_ok help --help
for cmd in train sample loglik eval plot; do
  contains help_lists_$cmd help.out "$cmd"
  expect_ok "help_$cmd" "$cmd" --help
done
for flag in --data --out --source --path --matcher --sigma --width --hidden-layers \
  --activation --batch --steps --lr --seed --device --resume; do
  contains "help_train_$flag" help_train.out "$flag"
done
# The defaults the issue asks for, as the help shows them ("--width INT:...=64").
for default in width=64 hidden-layers=3 activation=selu batch=256 lr=0.001 source=gaussian \
  path=condot matcher=icfm; do
  check "help_train_default_$default" grep -qE -- "^ +--${default%%=*} .*=${default#*=}( |$)" \
    help_train.out
done
for flag in --model --n --seed --noise --solver --steps --rtol --atol --out --trajectory --plot \
  --arch --dim --width --hidden-layers --activation; do
  contains "help_sample_$flag" help_sample.out "$flag"
done
for flag in --model --data --solver --steps --rtol --atol --divergence --probes --dtype --out; do
  contains "help_loglik_$flag" help_loglik.out "$flag"
done

# --- train on the built-in data (8gaussians) ----------------------------------
expect_ok train train --out model.safetensors "${SMALL[@]}" --seed 1
check train_model_written test -s model.safetensors
check train_checkpoint_written test -s model.ckpt
contains train_reports_steps train.out "step 30/30"
contains train_reports_rate train.out "steps/s"
contains train_reports_file train.out "wrote model.safetensors"
# The architecture is in the file's metadata (plain JSON in the header).
for key in '"tide.arch":"mlp"' '"tide.dim":"2"' '"tide.width":"16"' '"tide.hidden_layers":"2"' \
  '"tide.activation":"selu"' '"tide.data":"8gaussians"'; do
  check "train_metadata_$key" grep -qaF "$key" model.safetensors
done

# Resume: 30 steps then 10 more give the same file as 40 steps at once.
expect_ok train_40 train --out straight.safetensors "${SMALL[@]/30/40}" --seed 1
cp model.ckpt resumed.ckpt
expect_ok train_resume train --out resumed.safetensors "${SMALL[@]/30/40}" --seed 1 --resume
contains train_resume_range train_resume.out "trained steps 31..40"
check train_resume_identical cmp -s resumed.safetensors straight.safetensors
expect_ok train_resume_done train --out resumed.safetensors "${SMALL[@]/30/40}" --seed 1 --resume
contains train_resume_nothing train_resume_done.out "nothing to do"

# Other paths and matchers run.
expect_ok train_ve train --out ve.safetensors "${SMALL[@]}" --path ve --data moons
check train_ve_source grep -qaF '"tide.path":"ve"' ve.safetensors
expect_ok train_otcfm train --out ot.safetensors "${SMALL[@]}" --matcher otcfm --sigma 0.1 \
  --activation tanh --dtype float64

# --- files as data: .npy with 3 columns, .csv with a header -------------------
write_npy data3.npy '<f4' '(6, 3)' 0 1 2 1 2 3 2 3 4 -1 0 1 0.5 0.5 0.5 3 2 1
expect_ok train_npy train --data data3.npy --out model3.safetensors "${SMALL[@]}"
check train_npy_dim grep -qaF '"tide.dim":"3"' model3.safetensors
printf 'x,y\n0,1\n1,0\n-1,0.5\n0.25,-2\n' >data2.csv
expect_ok train_csv train --data data2.csv --out model_csv.safetensors "${SMALL[@]}"

# --- sample --------------------------------------------------------------------
expect_ok sample sample --model model.safetensors --n 200 --seed 3 --solver rk4 --steps 8 \
  --out x1.npy --trajectory traj.npy --plot samples.png
check sample_shape test "$(npy_shape x1.npy)" = "200, 2"
check sample_dtype test "$(npy_descr x1.npy)" = "<f4"
check sample_traj_shape test "$(npy_shape traj.npy)" = "9, 200, 2"
check sample_png test "$(png_size samples.png)" = "640x640"
contains sample_nfe sample.out "NFE 32"  # rk4: 4 evaluations per step
# Seeds: the same seed gives the same points, another seed others.
expect_ok sample_again sample --model model.safetensors --n 200 --seed 3 --solver rk4 \
  --steps 8 --out x1_again.npy
check sample_deterministic cmp -s x1.npy x1_again.npy
expect_ok sample_seed4 sample --model model.safetensors --n 200 --seed 4 --solver rk4 \
  --steps 8 --out x1_seed4.npy
check sample_seed_matters bash -c '! cmp -s x1.npy x1_seed4.npy'
for solver in euler midpoint heun dopri5; do
  expect_ok "sample_$solver" sample --model model.safetensors --n 20 --solver $solver --steps 4 \
    --out "x1_$solver.npy"
done
expect_ok sample_3d sample --model model3.safetensors --n 7 --out x3.npy --dtype float64
check sample_3d_shape test "$(npy_shape x3.npy)" = "7, 3"
check sample_3d_dtype test "$(npy_descr x3.npy)" = "<f8"
expect_ok sample_ve sample --model ve.safetensors --n 50 --solver rk4 --steps 4 --plot ve.png \
  --reference moons --bounds=-3,3,-2,2
check sample_ve_png test "$(png_size ve.png)" = "640x640"

# --- loglik --------------------------------------------------------------------
expect_ok loglik loglik --model model.safetensors --data x1.npy --solver rk4 --steps 8 \
  --out logp.npy
check loglik_shape test "$(npy_shape logp.npy)" = "200"
check loglik_dtype test "$(npy_descr logp.npy)" = "<f8"
contains loglik_nll loglik.out "mean NLL"
contains loglik_bpd loglik.out "bits/dim"
contains loglik_nfe loglik.out "NFE        32"
# The printed mean NLL is minus the mean of the written log-densities.
mean_nll=$(npy_values logp.npy | awk '{ s -= $1 } END { printf "%.4f", s / NR }')
contains loglik_mean_matches loglik.out "mean NLL   $mean_nll nats"
expect_ok loglik_builtin loglik --model model.safetensors --data 8gaussians --n 50 \
  --divergence hutchinson --probes 3 --probe-kind gaussian --dtype float64
contains loglik_hutchinson_se loglik_builtin.out "standard error"
expect_ok loglik_csv loglik --model model_csv.safetensors --data data2.csv
expect_ok loglik_3d loglik --model model3.safetensors --data data3.npy --solver heun --steps 5

# --- eval ----------------------------------------------------------------------
expect_ok eval eval --model model.safetensors --data 8gaussians --n 100 --solver rk4 --steps 8
for field in NLL bits/dim KL W2 MMD NFE; do contains "eval_$field" eval.out "$field"; done
contains eval_kl_known eval.out "with the true density"
expect_ok eval_moons eval --model model.safetensors --data moons --n 50 --solver rk4 --steps 4
contains eval_kl_unknown eval_moons.out "KL         n/a"
expect_ok eval_file eval --model model3.safetensors --data data3.npy --n 4 --solver rk4 --steps 4
contains eval_subsample eval_file.out "a random 4 of 6 rows"

# --- plot ----------------------------------------------------------------------
expect_ok plot_density plot --model model.safetensors --density --resolution 12 --steps 4 \
  --out density.png --size 256
check plot_density_png test "$(png_size density.png)" = "256x256"
expect_ok plot_layers plot --data 8gaussians --n 300 --samples x1.npy --trajectory traj.npy \
  --true-density --log-scale --resolution 20 --out layers.png
check plot_layers_png test "$(png_size layers.png)" = "640x640"
expect_ok plot_bounds plot --samples x1.npy --bounds=-5,5,-5,5 --out bounds.png
contains plot_bounds_printed plot_bounds.out "x in [-5, 5]"

finish
