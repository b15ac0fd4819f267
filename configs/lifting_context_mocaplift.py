"""The frame context encoder alone (lifting_context) on MocapLift: what lifting_baseline and diffpose start from."""

from posediff.engine import TrainConfig
from posediff.tasks.lifting import LiftingData

config = TrainConfig(recipe="lifting_context", data=LiftingData(), out="runs/lifting_context_mocaplift",
                     batch_size=64, lr=1e-3, weight_decay=1e-4, clip_grad=1.0, max_steps=4000, lr_drop=(3200,),
                     ckpt_every=500, eval_every=1000)
