"""SynthCrowd data, 256 px, rendered into data/synthcrowd on first use."""

from posediff.engine import DataConfig

coco17 = DataConfig(kind="synthcrowd", root="data/synthcrowd", num_images=2000, size=256, skeleton="coco17")
crowdpose14 = DataConfig(kind="synthcrowd", root="data/synthcrowd", num_images=2000, size=256,
                         skeleton="crowdpose14", prior=None)
