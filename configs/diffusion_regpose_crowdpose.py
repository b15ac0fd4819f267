"""diffusion_regpose (ResNet-50) on CrowdPose, ED-Pose's schedule (batch 16 = 8 GPUs x 2, 750 steps an epoch, 80
epochs, drop at 75)."""

from data_real import crowdpose

from posediff.engine import TrainConfig

config = TrainConfig(recipe="diffusion_regpose", model=dict(pretrained_backbone=True, num_keypoints=14), data=crowdpose,
                     out="runs/diffusion_regpose_crowdpose", batch_size=2, lr=1e-4, backbone_lr_mult=0.1,
                     max_steps=80 * 750, lr_drop=(75 * 750,), eval_every=750, ckpt_every=1000, workers=4)
