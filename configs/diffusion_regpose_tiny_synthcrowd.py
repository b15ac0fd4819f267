"""diffusion_regpose_tiny on SynthCrowd (COCO-17 labels), CPU-sized."""

from data_synthcrowd import coco17

from posediff.engine import TrainConfig

config = TrainConfig(recipe="diffusion_regpose_tiny", data=coco17, out="runs/diffusion_regpose_tiny_synthcrowd",
                     model={"freeze_backbone": True}, batch_size=4, lr=2e-4,
                     max_steps=7000, lr_drop=(5600,), ckpt_every=250, eval_every=1000)
