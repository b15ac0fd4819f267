"""Training: one process or torchrun DDP, the same code.

    posediff train configs/edpose_tiny_synthcrowd.py [key=value ...] [--resume]
    torchrun --nproc_per_node N -m posediff train CONFIG [key=value ...]

AdamW with a backbone learning-rate multiplier, step decay, gradient clipping, optional EMA, AMP on GPU,
tqdm progress, periodic evaluation by the recipe's task (``posediff.tasks``), atomic checkpoints (safetensors +
training state) and exact resumption. On CPU a run is deterministic: the data order of epoch e is a
permutation seeded by (seed, e), every item's augmentation is seeded by (seed, e, index), and the global
RNG state (timesteps, noise, dropout) is saved with each checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ..io import write_json
from ..tasks import get_task
from .checkpoint import (
    RUN_FILES,
    checkpoint_step,
    init_from,
    latest_checkpoint,
    load_checkpoint,
    load_state,
    newest_intact,
    resume_hint,
    save_checkpoint,
    save_weights,
)
from .config import TrainConfig, jsonable

__all__ = ["train", "train_step", "optimization", "epoch_loader", "build_model", "distributed"]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------
# Batches
# ----------------------------------------------------------------------------------------------------

def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    """The batches of one epoch for one rank: a permutation seeded by (seed, epoch), cut into global batches
    of ``batch_size * world`` images, rank r taking every world-th image of each (incomplete ones dropped)."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    global_bs = batch_size * world
    out = []
    for start in range(0, n - global_bs + 1, global_bs):
        out.append(perm[start + rank:start + global_bs:world].tolist())
    return out


# ----------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------

def distributed() -> tuple[int, int, int]:
    """(rank, local rank, world size) under torchrun (the process group started on first use), else (0, 0, 1).

    The group waits up to two hours at a barrier: under ``posediff bench`` rank 0 evaluates a finished run
    while the others wait for the next one.
    """
    import datetime

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend, timeout=datetime.timedelta(hours=2))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, local, world


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def param_groups(model, lr: float, backbone_mult: float, weight_decay: float):
    backbone, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (backbone if name.startswith("backbone.") else rest).append(p)
    return [dict(params=rest, lr=lr, weight_decay=weight_decay),
            dict(params=backbone, lr=lr * backbone_mult, weight_decay=weight_decay)]


def build_model(cfg: TrainConfig, steps: tuple[int, ...] = (), weights: bool = True):
    """``cfg``'s model, checked against the rest of the run before anything is trained: an unknown or bad model
    override, a model whose joints are not ``data.skeleton``'s, or sampling ``steps`` (to evaluate at) that its
    diffusion head cannot take are refused naming the fields. ``weights=False`` builds without downloading
    pretrained backbone weights (a dry build that checks a plan)."""
    from ..registry import create_model

    overrides = dict(cfg.model)
    if not weights and overrides.get("pretrained_backbone"):
        overrides["pretrained_backbone"] = False
    try:
        model = create_model(cfg.recipe, **overrides)
    except (TypeError, ValueError, KeyError) as err:  # KeyError: an unknown recipe, whose message lists them
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ValueError(f"recipe {cfg.recipe} with model overrides {cfg.model}: {message}") from err
    get_task(cfg.recipe).check_model(model, cfg)
    total = getattr(getattr(model, "head", None), "max_sampling_steps", None)  # None: a one-pass head
    if steps and total is not None and max(steps) > total:
        raise ValueError(f"sampling steps {max(steps)} (--steps): recipe {cfg.recipe} trains with num_train_timesteps="
                         f"{total}, and its scheduler cannot sample in more steps than that; ask for at most {total}")
    return model


def optimization(model, cfg: TrainConfig, device):
    """(AdamW over the trainable parameters, its lr schedule (``cfg.lr_drop``), bf16 autocast on a GPU when
    ``cfg.amp`` else None): what ``train`` steps with, and ``benchmarks/train_speed.py`` times."""
    optimizer = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.backbone_lr_mult, cfg.weight_decay))
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.lr_drop), gamma=cfg.lr_gamma)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (cfg.amp and device.type == "cuda") else None
    return optimizer, schedule, autocast


def epoch_loader(train_ds, cfg: TrainConfig, epoch: int, start: int = 0, count: int | None = None, rank: int = 0,
                 world: int = 1, collate=None):
    """(batches in this rank's ``epoch``, a DataLoader over ``count`` of them from ``start``): the epoch's own
    augmentation draws (``set_epoch``) and batch order (``epoch_batches``). A set smaller than one global batch is
    refused."""
    if collate is None:
        from ..data import collate

    train_ds.set_epoch(epoch)
    batches = epoch_batches(len(train_ds), cfg.batch_size, cfg.seed, epoch, rank, world)
    if not batches:
        raise ValueError(f"train set has {len(train_ds)} items, fewer than one batch of "
                         f"{cfg.batch_size * world} (batch_size {cfg.batch_size} x {world} process(es))")
    todo = batches[start:] if count is None else batches[start:start + count]
    # items are seeded, so any number of workers gives the same data; the loader's own generator keeps it from
    # drawing on the global RNG (timesteps, noise), which a resumed run must continue exactly
    loader = torch.utils.data.DataLoader(train_ds, batch_sampler=todo, collate_fn=collate, num_workers=cfg.workers,
                                         generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch))
    return len(batches), loader


def train_step(net, optimizer, schedule, batch, device, clip_grad: float, forward, autocast=None,
               step: int = 0) -> dict:
    """One optimisation step on a collated ``batch``, its losses computed by ``forward(net, batch, device)`` (its
    task's ``losses``), under ``autocast`` when given; returns the detached losses. A non-finite loss is refused
    (naming ``step``) before the weights change. ``train`` runs its steps with it, and
    ``benchmarks/train_speed.py`` times it."""
    net.train()
    with autocast if autocast is not None else contextlib.nullcontext():
        losses = forward(net, batch, device)
    loss = losses["loss"]
    if not torch.isfinite(loss):
        raise FloatingPointError(f"step {step}: loss is {float(loss)}; "
                                 f"parts: { {k: float(v) for k, v in losses.items()} }")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad > 0:
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip_grad)
    optimizer.step()
    schedule.step()
    return {k: v.detach() for k, v in losses.items()}


def run_folder(out, flag: str = "out="):
    """A training run's folder as an :class:`~posediff.io.OutputFolder`. One an earlier posediff wrote without a
    manifest is known by its ``last.json``, ``result.json`` or ``config.json`` (each checked for posediff's
    fields); its run files, checkpoints and the bench's ``bench.json`` are then taken as posediff's."""
    from ..io import OutputFolder

    def trained(folder: Path) -> list[str]:
        for name, keys in (("last.json", {"name", "step"}), ("result.json", {"steps", "seconds", "config"}),
                           ("config.json", {"config", "machine"})):
            with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
                if keys <= json.loads((folder / name).read_text()).keys():
                    return [*RUN_FILES, "bench.json", *(p.name for p in folder.glob("step_*")
                                                         if checkpoint_step(p) is not None)]
        return []

    return OutputFolder(out, flag, adopt=trained)


def _run_files(out: Path) -> list[str]:
    """The files a run writes in ``out``: its records, and the checkpoints there now (which it may prune)."""
    return [*RUN_FILES, *(p.name for p in sorted(out.glob("step_*")) if checkpoint_step(p) is not None)]


def _resume_point(out: Path, resume: bool, resume_from) -> tuple[Path, Path | None] | None:
    """(weights, state) to continue from: ``resume_from`` (a checkpoint of the run folder, checked; later damaged
    checkpoints are removed, a later intact one refuses it), else the folder's last; None for a new run."""
    if resume_from is None:
        try:
            found = latest_checkpoint(out)
        except (ValueError, FileNotFoundError) as err:
            if not resume:
                raise FileExistsError(f"{out}: holds a training run already, whose last.json is damaged ({err}); "
                                      f"pass --resume to continue it, or another out= to start afresh") from err
            raise type(err)(f"{err}{resume_hint(out)}") from err
        if found is not None and not resume:  # before anything is rendered or built
            raise FileExistsError(f"{out}: holds a training run already ({found[0].name}); pass --resume "
                                  f"(resume=True) to continue it, or another out= (or delete the folder) to start "
                                  f"afresh")
        return found
    chosen = Path(resume_from)
    if not chosen.is_file() and (out / chosen).is_file():
        chosen = out / chosen
    step = checkpoint_step(chosen)
    if not chosen.is_file() or step is None or not chosen.name.endswith(".safetensors") \
            or chosen.resolve().parent != out.resolve():
        raise ValueError(f"--resume-from {resume_from}: expected a checkpoint step_N.safetensors of the run folder "
                         f"{out}")
    newer = newest_intact(out, above=step)
    if newer is not None:
        raise ValueError(f"--resume-from {resume_from}: {newer.name} is a later intact checkpoint of {out}; "
                         f"--resume continues from the newest, and a run from an earlier step starts in another out= "
                         f"(--init {chosen})")
    return chosen, chosen.with_name(chosen.name.replace(".safetensors", ".state.pt"))


def _drop_later_checkpoints(out: Path, folder, step: int) -> None:
    """After ``--resume-from`` step ``step``: of the later checkpoints (none intact), the files that do not read
    go, weights that still read stay until the run writes that step again (said so), and last.json names
    ``step``'s checkpoint."""
    for p in sorted(out.glob("step_*")):
        later = checkpoint_step(p)
        if later is None or later <= step:
            continue
        try:
            load_checkpoint(p) if p.name.endswith(".safetensors") else load_state(p)
        except (ValueError, OSError):
            if folder.remove(p.name):
                log.warning("%s: removed %s, a damaged file after the checkpoint this run continues from", out, p.name)
        else:
            log.warning("%s: %s still reads; this run replaces it when it reaches step %d (copy it elsewhere to "
                        "keep it)", out, p.name, later)
    write_json({"name": f"step_{step:07d}", "step": step, "has_state": True}, out / "last.json")


def _check_defaults_unchanged(meta: dict, weights_path, cfg) -> None:
    """Refuse to resume a run whose checkpoint was made when a default it relies on was another (the model would
    go on training as another model): name the ``model.FIELD=VALUE`` overrides that continue it as it was."""
    from ..registry import as_trained

    made = as_trained(cfg.recipe, dict(cfg.model), int(meta.get("config_version", 0)))
    changed = {k: v for k, v in made.items() if k not in cfg.model}
    if changed:
        fix = " ".join(f"model.{k}={v}" for k, v in changed.items())
        raise ValueError(f"{weights_path}: this run was made when {', '.join(changed)} defaulted to "
                         f"{', '.join(map(str, changed.values()))} (metadata config_version "
                         f"{meta.get('config_version', 0)}); resume it with {fix}, or start afresh in another --out")


def train(cfg: TrainConfig, resume: bool = False, init: str | None = None, progress: bool = True,
          resume_from: str | None = None) -> dict:
    """Run (or continue) a training run; returns the final metrics and the loss history.

    The run folder (``cfg.out``) is an :class:`~posediff.io.OutputFolder`: a folder holding files of the same names
    that posediff did not write is refused before anything runs. ``resume`` continues from the folder's last
    checkpoint; ``resume_from`` (implies ``resume``) from the named one, e.g. when the last is damaged.
    """
    from tqdm import tqdm

    from ..env import machine_info

    rank, local, world = distributed()
    device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    out = Path(cfg.out)
    folder = run_folder(out)
    folder.check(_run_files(out))  # a folder of the user's own files is refused before anything runs
    task = get_task(cfg.recipe)
    cfg = task.resolve(cfg)
    task.check(cfg)
    resume = resume or resume_from is not None
    resume_point = _resume_point(out, resume, resume_from)
    _seed_all(cfg.seed)
    model = build_model(cfg).to(device)  # before the data: bad model settings are refused before any rendering
    data = task.build(cfg, rank)
    if init and not resume_point:
        done = init_from(model, init)
        log.info("initialised from %s: %d tensors loaded, %d fresh, %d of another shape, %d unused", init,
                 done["loaded"], len(done["fresh"]), len(done["shape_mismatch"]), len(done["unused"]))
    if rank == 0:  # the run folder is made once the run can start: a refused call leaves none
        folder.claim(_run_files(out))  # and the temporary files of a killed write are removed
    if world > 1 and not resume_point:  # each process its own timesteps, noise and padding (resume restores them)
        torch.manual_seed(cfg.seed + 1_000_003 * rank)
    optimizer, schedule, autocast = optimization(model, cfg, device)
    ema = None
    if cfg.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    step, epoch, pos, history, seconds_before = 0, 0, 0, [], 0.0
    if resume:
        if resume_point is None:
            log.warning("--resume: no checkpoint in %s; starting afresh", out)
        else:
            weights_path, state_path = resume_point
            try:
                weights, ema_w, meta = load_checkpoint(weights_path)
                if state_path is None or not state_path.is_file():
                    raise FileNotFoundError(f"{weights_path}: its training state (.state.pt) is missing")
                state = load_state(state_path)
            except (ValueError, FileNotFoundError) as err:
                raise type(err)(f"{err}{resume_hint(out, checkpoint_step(weights_path))}") from err
            task.check_checkpoint(meta, weights_path, "resume", cfg)
            _check_defaults_unchanged(meta, weights_path, cfg)
            cpu_rngs = state["torch_rng"] if isinstance(state["torch_rng"], list) else [state["torch_rng"]]  # per rank
            saved_world = len(cpu_rngs)
            if saved_world != world:
                raise ValueError(f"{state_path}: this run trained on {saved_world} process(es), this call has {world}; "
                                 f"the data order and RNG states are per process, so resume it with {saved_world}")
            model.load_state_dict(weights)
            if ema is not None and ema_w:
                ema.module.load_state_dict(ema_w)  # the average so far, and how many updates it holds
                ema.n_averaged.fill_(int(state.get("ema_updates", state["step"])))
            asked_lrs = list(schedule.base_lrs)
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            step, epoch, pos = state["step"], state["epoch"], state["pos"]
            _follow_asked_schedule(schedule, asked_lrs, cfg, step, state_path)
            task.on_resume(out, cfg, step)
            torch.set_rng_state(cpu_rngs[rank])
            if device.type == "cuda" and state.get("cuda_rng") and state["cuda_rng"][rank] is not None:
                torch.cuda.set_rng_state(state["cuda_rng"][rank])  # timesteps and noise are drawn on the GPU
            np.random.set_state(state["numpy_rng"])
            random.setstate(state["python_rng"])
            history = [h for h in state["history"] if h["step"] <= step]
            seconds_before = float(state.get("seconds", 0.0))  # training time of the earlier calls
            if resume_from is not None and rank == 0:
                _drop_later_checkpoints(out, folder, step)
            if rank == 0:
                _drop_later_best(out, folder, step)
            log.info("resumed %s at step %d", out, step)
    if rank == 0:  # after the checks above: a refused --resume leaves the run's record as it was
        write_json(dict(config=jsonable(cfg), **task.run_info(cfg), machine=machine_info(), world_size=world),
                   out / "config.json")
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local] if device.type == "cuda" else None)

    bar = tqdm(total=cfg.max_steps, initial=step, desc=f"train {cfg.recipe}", disable=not progress or rank != 0)
    last_eval = {}
    t_start = time.time()
    while step < cfg.max_steps:
        epoch_len, loader = epoch_loader(data.train, cfg, epoch, pos, cfg.max_steps - step, rank, world, task.collate)
        for batch in loader:
            losses = train_step(net, optimizer, schedule, batch, device, cfg.clip_grad, task.losses, autocast, step)
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            pos += 1
            record = {"step": step, "loss": float(losses["loss"]),
                      **{k: float(v) for k, v in losses.items() if k in task.log_keys}}
            history.append(record)
            bar.update(1)
            if step % cfg.log_every == 0:
                bar.set_postfix(loss=f"{record['loss']:.3f}",
                                **{k: f"{record[k]:.3f}" for k in task.log_keys[:2] if k in record})
            if cfg.eval_every and step % cfg.eval_every == 0 and rank == 0:
                last_eval = task.evaluate(ema.module if ema is not None else model, data, cfg, device)
                history[-1]["eval"] = last_eval
                log.info("step %d: %s", step, last_eval)
                if cfg.keep_best:
                    _keep_best(cfg, out, step, model, ema, last_eval, folder)
            if step % cfg.ckpt_every == 0 or step == cfg.max_steps:
                rngs = _gather_rng_states(world)
                if rank == 0:
                    _checkpoint(cfg, out, step, epoch, pos, model, ema, optimizer, schedule, history, rngs,
                                seconds_before + time.time() - t_start, folder)
                if world > 1:
                    torch.distributed.barrier()
        if pos >= epoch_len:
            epoch, pos = epoch + 1, 0
    bar.close()
    # seconds: training time over every call that made this run (an interrupted run adds up its parts)
    result = {"steps": step, "seconds": round(seconds_before + time.time() - t_start, 1), "history": history}
    if rank == 0:
        if not last_eval or history[-1].get("eval") is None:
            last_eval = task.evaluate(ema.module if ema is not None else model, data, cfg, device)
        result["metrics"] = last_eval
        write_json(dict(result, config=jsonable(cfg)), out / "result.json")
        _write_history(out, history)
    if world > 1:
        torch.distributed.barrier()
    return result


def _follow_asked_schedule(schedule, asked_lrs: list[float], cfg: TrainConfig, step: int, state_path) -> None:
    """On resume, make the learning-rate schedule the command asks for, or refuse clearly.

    The saved scheduler state would otherwise win silently over ``lr``, ``lr_gamma`` and ``lr_drop``. The
    learning rates and the drops already behind ``step`` cannot change (the steps are taken); drops after it
    follow the command, so a finished run can be extended with a later drop.
    """
    if len(asked_lrs) != len(schedule.base_lrs) or not all(
            math.isclose(a, b, rel_tol=1e-6) for a, b in zip(asked_lrs, schedule.base_lrs)):
        raise ValueError(f"{state_path}: this run trained with base learning rates {schedule.base_lrs}, the command "
                         f"asks for {asked_lrs} (lr={cfg.lr}, backbone_lr_mult={cfg.backbone_lr_mult}); a resumed "
                         f"run keeps its lr: start a new out= folder with --init instead")
    done = sorted(m for m in schedule.milestones.elements() if m <= step)
    asked_done = sorted(m for m in cfg.lr_drop if m <= step)
    if done != asked_done or (done and not math.isclose(schedule.gamma, cfg.lr_gamma)):
        raise ValueError(f"{state_path}: this run dropped its learning rate at steps {done} (x{schedule.gamma} each) "
                         f"up to step {step}; the command asks for lr_drop={tuple(cfg.lr_drop)}, lr_gamma="
                         f"{cfg.lr_gamma}. Drops before step {step} cannot change; later ones can")
    schedule.milestones = Counter(cfg.lr_drop)  # drops after `step` follow the command
    schedule.gamma = cfg.lr_gamma


def _write_history(out: Path, history: list[dict]) -> None:
    from ..io import atomic_path

    with atomic_path(out / "history.jsonl") as tmp, open(tmp, "w") as f:
        for h in history:
            f.write(json.dumps(h) + "\n")


def _gather_rng_states(world: int) -> list[tuple]:
    """Every rank's (CPU RNG state, CUDA RNG state or None), for an exact resume."""
    rng = (torch.get_rng_state(), torch.cuda.get_rng_state() if torch.cuda.is_available() else None)
    if world == 1:
        return [rng]
    states = [None] * world
    torch.distributed.all_gather_object(states, rng)
    return states


def _weights_meta(cfg) -> dict:
    """What every weights file of a run records beside its tensors: the training config and the task's own."""
    return {"config": jsonable(cfg), **get_task(cfg.recipe).checkpoint_meta(cfg)}


def _keep_best(cfg, out, step, model, ema, evaluation: dict, folder=None) -> None:
    """``keep_best="min:M"`` / ``"max:M"``: write best.safetensors and best.json when this step's ``evaluation``
    beats the value best.json holds (none yet: it does); a value that is not finite is never the best."""
    mode, metric = cfg.keep_best.split(":")
    if metric not in evaluation:
        raise ValueError(f"config field keep_best={cfg.keep_best!r}: the evaluation gives {sorted(evaluation)}, "
                         f"not {metric!r}")
    value = float(evaluation[metric])
    if not math.isfinite(value):
        log.warning("%s: step %d's %s is %s; best.safetensors stays as it is", out, step, metric, value)
        return
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        best = float(json.loads((out / "best.json").read_text())["value"])
        if not (value < best if mode == "min" else value > best):
            return
    if folder is not None:
        folder.claim(["best.safetensors", "best.json"])
    save_weights(out / "best.safetensors", step, model, cfg.recipe, cfg.model,
                 ema=ema.module if ema is not None else None, extra_meta=_weights_meta(cfg))
    write_json({"step": step, "metric": metric, "mode": mode, "value": value}, out / "best.json")


def _drop_later_best(out: Path, folder, step: int) -> None:
    """On resume at ``step``: a best.json of a later step belongs to steps this run takes again, so it and its
    weights go; the run keeps its best from its next evaluation on."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        later = int(json.loads((out / "best.json").read_text())["step"])
        if later > step:
            for name in ("best.safetensors", "best.json"):
                folder.remove(name)
            log.warning("%s: removed best.safetensors (step %d, after step %d, where this run continues); the best "
                        "is kept again from the next evaluation", out, later, step)


def _checkpoint(cfg, out, step, epoch, pos, model, ema, optimizer, schedule, history, rngs, seconds, folder=None):
    state = dict(step=step, epoch=epoch, pos=pos, optimizer=optimizer.state_dict(), schedule=schedule.state_dict(),
                 seconds=seconds, torch_rng=[r[0] for r in rngs], cuda_rng=[r[1] for r in rngs],
                 numpy_rng=np.random.get_state(), python_rng=random.getstate(), history=history,
                 ema_updates=int(ema.n_averaged) if ema is not None else None)
    save_checkpoint(out, step, model, cfg.recipe, cfg.model, state=state, ema=ema.module if ema is not None else None,
                    extra_meta=_weights_meta(cfg), keep=cfg.keep_checkpoints, folder=folder)
    _write_history(out, history)

