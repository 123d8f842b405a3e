#!/usr/bin/env bash
# Every kind of bad input to `tide` gives a clear one-line error and a
# non-zero exit status, never a crash: missing files, wrong shapes, unknown
# names, dimension mismatches between model and data, bad flag values.
# Errors found by Tide exit with 1; malformed command lines (CLI11) with its
# own codes (>= 100).
source "$(dirname "$0")/common.bash" "$@"

# A small model and some inputs to get wrong.
expect_ok setup_train train --out m.safetensors --steps 5 --batch 16 --width 8 --hidden-layers 1
write_npy good.npy '<f4' '(4, 2)' 0 1 1 0 -1 0.5 2 2
write_npy flat.npy '<f4' '(4,)' 0 1 2 3
write_npy three.npy '<f4' '(3, 3)' 0 1 2 3 4 5 6 7 8
write_npy empty.npy '<f4' '(0, 2)'
write_npy nan.npy '<f8' '(2, 2)' 0 1 NaN 2
write_npy traj_bad.npy '<f4' '(2, 2)' 0 1 2 3
printf 'x,y,z\n1,2,3\n4,5,6\n' >three.csv
printf 'x,y\n1,2\n3,oops\n' >text.csv
printf 'x,y\n1,2\n3\n' >ragged.csv
printf 'not a model' >garbage.safetensors
printf 'hello' >notes.txt
head -c 40 m.safetensors >truncated.safetensors
mkdir -p adir

# --- missing files -----------------------------------------------------------------
expect_error missing_model "file not found" sample --model nope.safetensors
expect_status missing_model 1
expect_error missing_model_loglik "file not found" loglik --model nope.safetensors --data good.npy
expect_error missing_data "file not found" loglik --model m.safetensors --data nope.npy
expect_error missing_train_data "file not found" train --data nope.csv --out x.safetensors
expect_error missing_noise "file not found" sample --model m.safetensors --noise nope.npy
expect_error missing_trajectory "file not found" plot --trajectory nope.npy --out p.png
expect_error missing_resume "--resume: checkpoint" \
  train --out fresh.safetensors --steps 5 --resume
expect_error missing_out_dir "does not exist" sample --model m.safetensors --out no/dir/x.npy
expect_error model_is_dir "not a regular file" sample --model adir

# --- unreadable or corrupt files -------------------------------------------------------
expect_error garbage_model "garbage.safetensors" sample --model garbage.safetensors
expect_status garbage_model 1
expect_error truncated_model "truncated.safetensors" sample --model truncated.safetensors
expect_error text_csv "text.csv" loglik --model m.safetensors --data text.csv
expect_error ragged_csv "ragged.csv" train --data ragged.csv --out x.safetensors
expect_error nan_npy "row 1, column 0 is NaN" loglik --model m.safetensors --data nan.npy
expect_error wrong_file_type "unsupported file type '.txt'" train --data notes.txt --out x.safetensors
expect_error model_not_safetensors "good.npy" loglik --model good.npy --data good.npy

# --- wrong shapes ----------------------------------------------------------------------
expect_error flat_data "expected a 2-D array" loglik --model m.safetensors --data flat.npy
expect_error empty_data "at least one point" loglik --model m.safetensors --data empty.npy
expect_error flat_noise "expected a 2-D array" sample --model m.safetensors --noise flat.npy
expect_error bad_trajectory "[T, N, 2]" plot --trajectory traj_bad.npy --out p.png
expect_error plot_3d_samples "only 2-D points" plot --samples three.npy --out p.png

# --- dimension mismatch between model and data ---------------------------------------
expect_error dim_loglik "--data 'three.npy': the points have 3 coordinates but the model 'm.safetensors' has dimension 2" \
  loglik --model m.safetensors --data three.npy
expect_error dim_loglik_csv "has dimension 2" loglik --model m.safetensors --data three.csv
expect_error dim_noise "has dimension 2" sample --model m.safetensors --noise three.npy
expect_error dim_eval "has dimension 2" eval --model m.safetensors --data three.npy
expect_ok setup_train3 train --data three.npy --out m3.safetensors --steps 5 --batch 4 --width 8
expect_error dim_builtin "has dimension 3" loglik --model m3.safetensors --data moons
expect_error plot_3d_model "dimension 3" sample --model m3.safetensors --plot p.png
expect_error plot_density_3d "dimension 3" plot --model m3.safetensors --density --out p.png \
  --bounds=-1,1,-1,1

# --- unknown names ---------------------------------------------------------------------
expect_error unknown_dataset "not a built-in data set" train --data 9gaussians --out x.safetensors
expect_error unknown_dataset_lists "8gaussians" train --data 9gaussians --out x.safetensors
expect_error unknown_solver "--solver" sample --model m.safetensors --solver rk5
expect_error unknown_path "--path" train --out x.safetensors --path straight
expect_error unknown_matcher "--matcher" train --out x.safetensors --matcher fm
expect_error unknown_activation "--activation" train --out x.safetensors --activation swoosh
expect_error unknown_source "--source" train --out x.safetensors --source uniform
expect_error unknown_divergence "--divergence" loglik --model m.safetensors --data good.npy \
  --divergence trace
expect_error unknown_dtype "--dtype" loglik --model m.safetensors --data good.npy --dtype half
expect_error unknown_arch "--arch" sample --model m.safetensors --arch resnet
expect_error unknown_command "unknown command 'frobnicate'" frobnicate
expect_error unknown_flag "--frobnicate" sample --model m.safetensors --frobnicate
check unknown_flag_cli11_status test $status -ge 100
expect_error no_command "subcommand" 

# --- bad flag values -------------------------------------------------------------------
expect_error train_no_out "--out" train
expect_error steps_zero "--steps: 0 is out of range" train --out x.safetensors --steps 0
expect_error batch_negative "--batch" train --out x.safetensors --batch -5
expect_error lr_negative "--lr: -0.1 is not a positive number" train --out x.safetensors --lr -0.1
expect_error lr_text "--lr: 'fast' is not a number" train --out x.safetensors --lr fast
expect_error width_zero "--width" train --out x.safetensors --width 0
expect_error sigma_negative "--sigma" train --out x.safetensors --sigma -1
expect_error sigma_on_path "sigma" train --out x.safetensors --path ve --sigma 0.1 --steps 5
expect_error out_extension "expected a .safetensors file name" train --out model.bin
expect_error device_cuda "--device cuda" train --out x.safetensors --device cuda --steps 5
expect_error n_zero "--n" sample --model m.safetensors --n 0
expect_error noise_and_n "excludes" sample --model m.safetensors --noise good.npy --n 5
expect_error rtol_text "--rtol" sample --model m.safetensors --rtol tight
expect_error steps_negative "--steps" sample --model m.safetensors --solver rk4 --steps -1
expect_error tolerances_zero "at least one tolerance" sample --model m.safetensors --rtol 0 --atol 0
expect_error probes_zero "--probes" loglik --model m.safetensors --data good.npy \
  --divergence hutchinson --probes 0
expect_error probes_exact "--probes 4" loglik --model m.safetensors --data good.npy --probes 4
expect_error loglik_no_data "--data" loglik --model m.safetensors
expect_error out_npy_extension "expected a .npy file name" sample --model m.safetensors --out x.csv
expect_error plot_png_extension "expected a .png file name" sample --model m.safetensors --plot x.jpg
expect_error dim_needs_arch "--arch" sample --model m.safetensors --dim 3
expect_error bounds_text "is not a number" plot --samples good.npy --bounds=a,1,0,1 --out p.png
expect_error bounds_count "expected 4 numbers" plot --samples good.npy --bounds=0,1,0 --out p.png
expect_error bounds_order "xmin < xmax" plot --samples good.npy --bounds=1,0,0,1 --out p.png
expect_error plot_nothing "nothing to plot" plot --out p.png
expect_error density_needs_model "--model" plot --density --out p.png
expect_error true_density_unknown "--true-density" plot --data moons --true-density --out p.png
expect_error size_tiny "--size" plot --samples good.npy --size 3 --out p.png

# Nothing was written by the failed commands.
check no_stray_outputs test ! -e x.safetensors -a ! -e p.png -a ! -e fresh.safetensors

finish
