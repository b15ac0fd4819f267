"""edpose_tiny on SynthCrowd with CrowdPose-14 labels (AP_E / AP_M / AP_H), CPU-sized."""

from data_synthcrowd import crowdpose14

from posediff.engine import TrainConfig

config = TrainConfig(recipe="edpose_tiny", model=dict(num_keypoints=14, freeze_backbone=True), data=crowdpose14,
                     out="runs/edpose_tiny_synthcrowd_crowdpose", batch_size=4, lr=2e-4,
                     max_steps=7000, lr_drop=(5600,), ckpt_every=250, eval_every=1000)
