"""edpose_tiny on SynthCrowd with CrowdPose-14 labels (AP_E / AP_M / AP_H), CPU-sized."""

from data_synthcrowd import crowdpose14

from posediff.engine import TrainConfig

config = TrainConfig(recipe="edpose_tiny", model=dict(num_keypoints=14), data=crowdpose14,
                     out="runs/edpose_tiny_synthcrowd_crowdpose", batch_size=4, lr=2e-4, max_steps=4000,
                     lr_drop=(3200,), ckpt_every=200)
