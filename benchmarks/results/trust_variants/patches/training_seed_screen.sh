#!/bin/sh
# One help screen of the default with a prior meta-trained for STEPS outer steps with SEED
# (session 17; benchmarks/results/trust_variants/README.md, training_seed_and_steps_screen_help).
# usage: training_seed_screen.sh FAMILY STEPS SEED V3_CACHE YAHPO_DATA OUT_DIR  (from the repo root)
set -e
fam=$1; steps=$2; seed=$3; v3=$4; yahpo=$5; out=$6
cache=$out/cache_${fam}_${steps}_s${seed}
mkdir -p "$cache"
cp "$v3/$fam.source.pkl" "$cache/"
export PYTHONPATH=. OMP_NUM_THREADS=1 METAPRIOR_YAHPO_DATA=$yahpo
here=$(dirname "$0")
[ -f "$cache/$fam.prior" ] || python "$here/training_seed_prior.py" "$fam" "$steps" "$seed" "$cache/$fam.prior" "$yahpo"
python -m benchmarks.run --families "$fam" --methods metaprior --tasks 8 --seeds 2 --budget 12 \
    --block help --cache "$cache" --workers 2 --no-progress --allow-mixed \
    --out "$out/help_${fam}_${steps}_s${seed}.csv"
