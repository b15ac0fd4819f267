"""SynthCrowd data: 4000 scenes of 256 px (3200 train / 400 val / 400 test), rendered into data/synthcrowd on
first use."""

from posediff.engine import DataConfig

coco17 = DataConfig(kind="synthcrowd", root="data/synthcrowd", num_images=4000, size=256, skeleton="coco17")
crowdpose14 = DataConfig(kind="synthcrowd", root="data/synthcrowd", num_images=4000, size=256,
                         skeleton="crowdpose14", prior=None)
