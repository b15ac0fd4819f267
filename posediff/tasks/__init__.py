"""Tasks: what a sample of each model family is and how it is scored (``multiperson``, ``topdown``, ``lifting``)."""

from __future__ import annotations

from .base import Task, TaskData

__all__ = ["Task", "TaskData", "get_task", "task_name"]


def task_name(recipe: str) -> str:
    """The task recipe ``recipe`` belongs to (its registered function's ``task``; one-stage recipes by default)."""
    from ..registry import get_recipe

    return getattr(get_recipe(recipe), "task", "multiperson")


def get_task(recipe: str) -> Task:
    """The :class:`Task` that trains and scores ``recipe``."""
    name = task_name(recipe)
    if name == "lifting":
        from .lifting import LiftingTask

        return LiftingTask()
    if name == "topdown":
        from .topdown import TopDownTask

        return TopDownTask()
    from .multiperson import MultipersonTask

    return MultipersonTask()
