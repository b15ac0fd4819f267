"""The model zoo: weights the library made itself, shipped in ``posediff/assets/zoo`` (no network needed).

A zoo file is safetensors (fp16) whose metadata names its ``format``, its ``recipe`` and the recipe's
``overrides``, and optionally a ``base``: another zoo file that holds the rest of the tensors. A file exported
with ``--int8`` stores its large weight tensors as int8 with one fp16 scale per output channel (the tensor
``NAME.int8_scale``), which reading multiplies back. The
``edpose_tiny`` SynthCrowd model was trained with its backbone frozen at the pretrained SynthCrowd
backbone, so it ships only what training changed (about 4 MB) on top of that backbone file.

    >>> model = posediff.create_model("edpose_tiny", pretrained="synthcrowd")   # eval mode, CPU
    >>> weights = zoo_weights("edpose_tiny", "synthcrowd")                     # float32 state dict

``posediff zoo export RUN --out FILE --base BASE`` makes such a file from a training run and records its
command, time, machine and test metrics in the file's metadata; docs/zoo.md describes each shipped file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["ZOO_DIR", "PRETRAINED", "FORMAT", "zoo_path", "zoo_weights", "zoo_metadata", "load_pretrained",
           "read_zoo_file", "tensors_digest", "quantize_int8", "dequantize_int8"]

ZOO_DIR = Path(__file__).parent / "assets" / "zoo"
FORMAT = "posediff.zoo/1"
INT8_SCALE = ".int8_scale"  # the per-output-channel scale of an int8 tensor NAME is the tensor NAME + INT8_SCALE

# (recipe, tag) -> file in ZOO_DIR
PRETRAINED: dict[tuple[str, str], str] = {
    ("edpose_tiny", "synthcrowd"): "edpose_tiny_synthcrowd.safetensors",
    ("diffusion_regpose_tiny", "synthcrowd"): "diffusion_regpose_tiny_synthcrowd.safetensors",
    ("simplebaseline_tiny", "synthcrowd"): "simplebaseline_tiny_synthcrowd.safetensors",
    ("diffusionpose_tiny", "synthcrowd"): "diffusionpose_tiny_synthcrowd.safetensors",
    ("lifting_context", "mocaplift"): "lifting_context_mocaplift.safetensors",
    ("lifting_baseline", "mocaplift"): "lifting_baseline_mocaplift.safetensors",
    ("diffpose", "mocaplift"): "diffpose_mocaplift.safetensors",
}


def zoo_path(name: str) -> Path:
    """The path of a zoo file, by its file name (``"resnet18_synthcrowd_heatmaps.safetensors"``)."""
    path = ZOO_DIR / name
    if not path.is_file():
        have = sorted(p.name for p in ZOO_DIR.glob("*.safetensors"))
        raise FileNotFoundError(f"zoo file {name!r} not found in {ZOO_DIR}; the zoo has {have}")
    return path


def _entry(recipe: str, tag: str) -> Path:
    try:
        return zoo_path(PRETRAINED[(recipe, tag)])
    except KeyError:
        tags = sorted(t for r, t in PRETRAINED if r == recipe)
        raise KeyError(f"no pretrained weights {tag!r} for recipe {recipe!r}; available for it: {tags or 'none'}; "
                       f"the zoo: {sorted(PRETRAINED)}") from None


def zoo_metadata(path) -> dict:
    """A zoo file's metadata, with the JSON fields (``overrides``, ``metrics``) decoded."""
    from .io import read_safetensors

    meta = dict(read_safetensors(path, "a posediff zoo file", tensors=False)[0])
    for key in ("overrides", "metrics", "made_by"):
        if key in meta:
            meta[key] = json.loads(meta[key])
    return meta


def read_zoo_file(path, seen: tuple = ()) -> dict[str, torch.Tensor]:
    """All tensors of a zoo file and of its ``base`` chain, as float32 (integer tensors kept as they are)."""
    from .io import read_safetensors

    path = Path(path)
    if path.name in seen:
        raise ValueError(f"{path}: its 'base' chain loops ({' -> '.join(seen)})")
    meta, tensors = read_safetensors(path, "a posediff zoo file")
    base = meta.get("base")
    out = read_zoo_file(zoo_path(base), seen + (path.name,)) if base else {}
    if base and "base_digest" in meta and (digest := tensors_digest(out)) != meta["base_digest"]:
        raise ValueError(f"{path}: its base {base} is not the file it was exported against (metadata field "
                         f"base_digest {meta['base_digest'][:12]}..., the base's tensors give {digest[:12]}...); "
                         f"export the model again against this base")
    out.update(dequantize_int8(tensors))
    return {k: v.float() if v.is_floating_point() else v for k, v in out.items()}


def quantize_int8(tensors: dict[str, torch.Tensor], min_numel: int = 4096) -> dict[str, torch.Tensor]:
    """Floating tensors of at least 2 dimensions and ``min_numel`` elements (convolution and linear weights) as
    int8, w ≈ q · s with one scale s per output channel (dim 0), s = max |w| / 127, stored as fp16 beside it
    (``NAME.int8_scale``, shape (C_out, 1, ...)); the scale is rounded to fp16 before q is, so that q · s is
    what reading gives. Other tensors are returned as they are."""
    out = {}
    for k, v in tensors.items():
        if not v.is_floating_point() or v.dim() < 2 or v.numel() < min_numel:
            out[k] = v
            continue
        w = v.float()
        scale = (w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True) / 127).clamp_min(1e-8).half()
        out[k] = (w / scale.float()).round().clamp(-127, 127).to(torch.int8).contiguous()
        out[k + INT8_SCALE] = scale.contiguous()
    return out


def dequantize_int8(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`quantize_int8`: each int8 tensor with a scale, times it, as float32."""
    out = {k: v for k, v in tensors.items() if not k.endswith(INT8_SCALE)}
    for k, v in tensors.items():
        if k.endswith(INT8_SCALE):
            name = k[:-len(INT8_SCALE)]
            if name not in out or out[name].dtype != torch.int8:
                raise ValueError(f"zoo tensors: {k} scales no int8 tensor {name!r}")
            out[name] = out[name].float() * v.float()
    return out


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over a state dict's names and float32 values (what a zoo file's ``base_digest`` records)."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(tensors):
        v = tensors[k].float() if tensors[k].is_floating_point() else tensors[k]
        h.update(k.encode())
        h.update(v.contiguous().numpy().tobytes())
    return h.hexdigest()


def zoo_weights(recipe: str, tag: str) -> dict[str, torch.Tensor]:
    """The float32 state dict of a pretrained recipe (its base file's tensors included)."""
    return read_zoo_file(_entry(recipe, tag))


def load_pretrained(recipe: str, tag: str, **overrides):
    """Build ``recipe`` with the overrides it was trained with (and ``overrides``), load the zoo weights
    strictly, return it in eval mode."""
    from .registry import as_trained, create_model

    path = _entry(recipe, tag)
    meta = zoo_metadata(path)
    if meta.get("format") != FORMAT or meta.get("recipe") != recipe:
        raise ValueError(f"{path}: metadata says format {meta.get('format')!r}, recipe {meta.get('recipe')!r}; "
                         f"expected {FORMAT!r} and {recipe!r}")
    trained = as_trained(recipe, meta.get("overrides", {}), int(meta.get("config_version", 0)))
    model = create_model(recipe, **{**trained, **overrides})
    missing, unexpected = model.load_state_dict(zoo_weights(recipe, tag), strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit recipe {recipe!r} with overrides {overrides}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()
