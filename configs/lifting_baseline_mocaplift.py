"""lifting_baseline (DiffPose's Baseline A) on MocapLift, on the frozen context of lifting_context_mocaplift."""

from posediff.engine import TrainConfig
from posediff.tasks.lifting import LiftingData

config = TrainConfig(recipe="lifting_baseline", data=LiftingData(), out="runs/lifting_baseline_mocaplift",
                     model={"context_weights": "runs/lifting_context_mocaplift/step_0004000.safetensors"},
                     batch_size=64, lr=1e-3, weight_decay=1e-4, clip_grad=1.0, max_steps=2000, lr_drop=(1600,),
                     ckpt_every=250, eval_every=500)
