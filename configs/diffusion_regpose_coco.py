"""diffusion_regpose (ResNet-50) on COCO 2017, ED-Pose's schedule (batch 16 = 8 GPUs x 2, 7330 steps an
epoch, 60 epochs, drop at 55)."""

from data_real import coco

from posediff.engine import TrainConfig

config = TrainConfig(recipe="diffusion_regpose", model=dict(pretrained_backbone=True), data=coco,
                     out="runs/diffusion_regpose_coco", batch_size=2, lr=1e-4, backbone_lr_mult=0.1,
                     max_steps=60 * 7330, lr_drop=(55 * 7330,), eval_every=7330, ckpt_every=1000, workers=4)
