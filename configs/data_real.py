"""Full COCO 2017 and CrowdPose downloads (not on our machines: point root at yours)."""

from posediff.engine import DataConfig

# ED-Pose's augmentation sizes
_SCALES = (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)

coco = DataConfig(kind="coco", skeleton="coco17",
                  train_images="data/coco/train2017", train_ann="data/coco/annotations/person_keypoints_train2017.json",
                  val_images="data/coco/val2017", val_ann="data/coco/annotations/person_keypoints_val2017.json",
                  train_scales=_SCALES, crop_scales=(400, 500, 600), crop_size=(384, 600), max_size=1333,
                  eval_size=800, pixel_noise=0.0)
crowdpose = DataConfig(kind="coco", skeleton="crowdpose14", prior=None,
                       train_images="data/crowdpose/images", train_ann="data/crowdpose/json/crowdpose_trainval.json",
                       val_images="data/crowdpose/images", val_ann="data/crowdpose/json/crowdpose_test.json",
                       train_scales=_SCALES, crop_scales=(400, 500, 600), crop_size=(384, 600), max_size=1333,
                       eval_size=800, pixel_noise=0.0)
