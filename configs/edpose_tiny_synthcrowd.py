"""edpose_tiny on SynthCrowd (COCO-17 labels), CPU-sized."""

from data_synthcrowd import coco17

from posediff.engine import TrainConfig

config = TrainConfig(recipe="edpose_tiny", model={"freeze_backbone": True}, data=coco17,
                     out="runs/edpose_tiny_synthcrowd", batch_size=4, lr=2e-4,
                     max_steps=7000, lr_drop=(5600,), ckpt_every=250, eval_every=1000)
