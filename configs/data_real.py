"""Full COCO 2017 and CrowdPose downloads (not on our machines: point the roots at yours)."""

from posediff.tasks.multiperson import coco_data, crowdpose_data

coco = coco_data("data/coco")
crowdpose = crowdpose_data("data/crowdpose")
