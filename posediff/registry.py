"""Recipe registry (timm's ``create_model`` style): recipes only, not every class."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

__all__ = ["register_model", "create_model", "list_models", "get_recipe", "get_config", "with_config",
           "CONFIG_VERSION", "DEFAULT_CHANGES", "SAMPLING_FIELDS", "as_trained"]

_RECIPES: dict[str, Callable] = {}

# The recipe configs' defaults as they changed, oldest first: (version, the recipes whose models the change
# alters, {field: its value before}). Checkpoints and zoo files record the version they were made at (metadata
# ``config_version``; none: 0), and are rebuilt with the earlier value of each changed field they did not set,
# so that they load as the model they were trained as. A change of default adds a row and raises CONFIG_VERSION.
DEFAULT_CHANGES: list[tuple[int, tuple[str, ...], dict]] = [
    # DiffusionPose's head: a residual correction on detached features (before: Ĥ_0 outright, loss into F)
    (1, ("diffusionpose", "diffusionpose_tiny", "diffusionpose_tiny_control"),
     {"residual": False, "detach_features": False}),
    # the diffusion heads' pose-NMS threshold, chosen on val (before: 0.9)
    (2, ("diffusion_regpose", "diffusion_regpose_tiny", "diffusion_regpose_tiny_control"), {"nms_threshold": 0.9}),
    # diffpose_released with the released code's own denoiser (before: posediff's graph denoiser)
    (3, ("diffpose_released",), {"denoiser": "graph", "dim": 128, "blocks": 3}),
    # diffpose_video_tiny sized for CPU (before: T = 27, width 128, 4 layer pairs)
    (3, ("diffpose_video_tiny",), {"frames": 27, "context_dim": 128, "context_depth": 4}),
    # DiffusionPose's sampling start, chosen on val (before: the coarse estimate noised to start_timestep)
    (4, ("diffusionpose", "diffusionpose_tiny", "diffusionpose_tiny_control"), {"start": "coarse"}),
]
CONFIG_VERSION = max(v for v, _, _ in DEFAULT_CHANGES)
# The changed fields that alter only how a trained model samples (its weights and its training are the same at
# either value): a file made before such a change can be scored again at the current value
# (``posediff bench --rescore``).
SAMPLING_FIELDS = frozenset({"nms_threshold", "start"})


def as_trained(recipe: str, overrides: dict, version: int, current_sampling: bool = False) -> dict:
    """The overrides that rebuild ``recipe`` as a file made at config ``version`` with ``overrides`` was: the
    defaults changed since then, at their earlier values, wherever ``overrides`` does not set them.
    ``current_sampling``: the changed fields of :data:`SAMPLING_FIELDS` keep their current defaults instead (the
    weights as trained, sampled as the recipe samples now)."""
    earlier: dict = {}
    for v, recipes, before in reversed(DEFAULT_CHANGES):  # newest first, so the oldest value wins
        if v > version and recipe in recipes:
            earlier.update({k: x for k, x in before.items() if not (current_sampling and k in SAMPLING_FIELDS)})
    return {**earlier, **overrides}


def register_model(fn: Callable) -> Callable:
    """Register ``fn(**overrides) -> nn.Module`` under its function name. A recipe that also has
    ``fn.config(**overrides)`` (returning the config dataclass it would build) can be read by ``get_config``."""
    if fn.__name__ in _RECIPES:
        raise ValueError(f"register_model: a recipe named {fn.__name__!r} exists already")
    _RECIPES[fn.__name__] = fn
    return fn


def with_config(base, task: str | None = None, adjust: Callable | None = None) -> Callable:
    """Give a recipe function ``fn.config(**overrides)``: the config dataclass it builds (``base`` with the
    overrides; unknown fields refused, ``adjust(base, overrides)`` may complete them), read without building the
    model (:func:`get_config`), and ``fn.task``, the task it runs through (:func:`posediff.tasks.get_task`)."""

    def wrap(fn: Callable) -> Callable:
        def config(**overrides):
            fields = {f.name for f in dataclasses.fields(base)}
            unknown = sorted(set(overrides) - fields)
            if unknown:
                raise TypeError(f"unknown config field(s) {unknown}; fields: {sorted(fields)}")
            return dataclasses.replace(base, **(adjust(base, overrides) if adjust else overrides))

        fn.config = config
        if task is not None:
            fn.task = task
        return fn

    return wrap


def _load() -> None:
    from . import recipes  # noqa: F401  (registers the built-in recipes)


def list_models() -> list[str]:
    _load()
    return sorted(_RECIPES)


def get_recipe(name: str) -> Callable:
    _load()
    try:
        return _RECIPES[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; available: {sorted(_RECIPES)}") from None


def get_config(name: str, **overrides):
    """The config dataclass recipe ``name`` builds with these overrides, without building the model (unknown
    fields are refused as ``create_model`` refuses them). Raises ``TypeError`` for a recipe with no ``config``."""
    recipe = get_recipe(name)
    if not callable(getattr(recipe, "config", None)):
        raise TypeError(f"recipe {name!r} does not expose its config (give it a config(**overrides) attribute)")
    return recipe.config(**overrides)


def create_model(name: str, pretrained: str | None = None, **overrides):
    """Build a registered recipe; keyword arguments override fields of its config.

    ``pretrained="synthcrowd"`` loads the library's own zoo weights for that recipe (``posediff.zoo``;
    shipped in the package, no network) and returns the model in eval mode.
    """
    if pretrained:
        from .zoo import load_pretrained

        get_recipe(name)
        return load_pretrained(name, pretrained, **overrides)
    return get_recipe(name)(**overrides)
