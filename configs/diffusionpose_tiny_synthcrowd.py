"""diffusionpose_tiny on SynthCrowd person crops: simplebaseline_tiny's config with the diffusion head (same data,
budget and backbone)."""

import dataclasses

from simplebaseline_tiny_synthcrowd import config as simplebaseline

config = dataclasses.replace(simplebaseline, recipe="diffusionpose_tiny", out="runs/diffusionpose_tiny_synthcrowd")
