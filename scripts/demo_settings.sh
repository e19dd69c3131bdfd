# The lesion benchmark and training settings shared by `make demo` (scripts/demo.sh) and
# bench/ablation, so the ablation table describes the model the demo trains.
DEMO_SYNTH_ARGS=(--seed 0)
DEMO_EPOCHS=16
DEMO_TRAIN_ARGS=(--object "brain MRI" --weights none --image-size 128 --batch 16 --lr 1e-3 --warmup 150 --seed 0)
