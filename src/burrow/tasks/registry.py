"""``TaskRegistry``: the tasks of one ``Burrow`` app, by name (never a global)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from burrow.errors import TaskDefinitionError, UnknownTask
from burrow.tasks.definition import TaskDefinition


class TaskRegistry:
    """Task definitions by name, plus dead-letter (compensation) hooks by task name."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskDefinition] = {}
        self._on_dead: dict[str, list[Callable[..., Any]]] = {}

    def add(self, definition: TaskDefinition) -> None:
        """Register a task.

        Raises:
            TaskDefinitionError: a task with the same name is already registered.
        """
        if definition.name in self._tasks:
            raise TaskDefinitionError(f"task {definition.name!r} is already registered")
        self._tasks[definition.name] = definition

    def add_on_dead(self, name: str, hook: Callable[..., Any]) -> None:
        """Register a hook run once when a task of this name is dead-lettered."""
        self._on_dead.setdefault(name, []).append(hook)

    def get(self, name: str) -> TaskDefinition:
        """The definition of ``name``.

        Raises:
            UnknownTask: no such task.
        """
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTask(name) from None

    def find(self, name: str) -> TaskDefinition | None:
        return self._tasks.get(name)

    def on_dead(self, name: str) -> list[Callable[..., Any]]:
        return self._on_dead.get(name, [])

    def queues(self) -> list[str]:
        """Every queue at least one task listens on, sorted."""
        return sorted({d.queue for d in self._tasks.values()})

    def __iter__(self) -> Iterator[TaskDefinition]:
        return iter(self._tasks.values())

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks
