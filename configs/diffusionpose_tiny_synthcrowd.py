"""diffusionpose_tiny on SynthCrowd person crops (ground-truth boxes), CPU-sized: the persons the one-stage
standard run sees (7000 steps x 4 scenes x 4.55 persons) in batches of 32 crops, the backbone trained with the
head at its learning rate, as SimpleBaseline trains (docs/recipes.md). Start it from the SynthCrowd backbone:
``--init posediff/assets/zoo/resnet18_synthcrowd_heatmaps.safetensors``."""

from data_synthcrowd import coco17

from posediff.engine import TrainConfig

config = TrainConfig(recipe="diffusionpose_tiny", data=coco17,
                     out="runs/diffusionpose_tiny_synthcrowd", batch_size=32, lr=1e-3, backbone_lr_mult=1.0,
                     max_steps=4000, lr_drop=(3200,), ckpt_every=250, eval_every=1000)
