"""The step graph: edges from outputs to the dependencies that read them, plus `after`.

Pure functions over a parsed :class:`~gitpipe.pipeline.model.Pipeline`; iterative throughout,
so a 10,000-step chain has no depth limit.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gitpipe.core.errors import PipelineError, UsageError
from gitpipe.pipeline.model import PathSpec, Pipeline


@dataclass(frozen=True, slots=True)
class Graph:
    """Steps in file order with their parents (upstream) and children (downstream)."""

    order: tuple[str, ...]  # a topological order, stable with respect to the file
    parents: Mapping[str, tuple[str, ...]]
    children: Mapping[str, tuple[str, ...]]
    producer: Mapping[str, str]  # output path -> step that declares it
    out_paths: tuple[str, ...] = ()  # the producer's keys, sorted, for prefix look-ups
    #: matrix steps and nested pipeline steps -> the steps they expand to
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def producers_of(self, dep: PathSpec) -> set[str]:
        """Steps whose outputs a dependency reads: the output itself, a folder output
        around it, or outputs inside a dependency folder."""
        found = set()
        path, producer = dep.path, self.producer
        end = path.find("/")
        while end >= 0:  # each folder above it, then the path itself
            name = producer.get(path[:end])
            if name is not None:
                found.add(name)
            end = path.find("/", end + 1)
        name = producer.get(path)
        if name is not None:
            found.add(name)
        prefix = "" if path == "." else path + "/"
        i = bisect.bisect_left(self.out_paths, prefix)
        while i < len(self.out_paths) and self.out_paths[i].startswith(prefix):
            found.add(self.producer[self.out_paths[i]])
            i += 1
        return found

    def upstream(self, names: Iterable[str]) -> set[str]:
        return _closure(names, self.parents)

    def downstream(self, names: Iterable[str]) -> set[str]:
        return _closure(names, self.children)

    def sorted(self, names: Iterable[str]) -> list[str]:
        chosen = set(names)
        return [name for name in self.order if name in chosen]


def _closure(names: Iterable[str], edges: Mapping[str, tuple[str, ...]]) -> set[str]:
    seen: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(edges[name])
    return seen


def build(pipeline: Pipeline) -> Graph:
    """Derive edges, reject unknown `after` names and cycles, and order the steps."""
    steps = pipeline.steps
    producer = {spec.path: name for name, step in steps.items() for spec in step.all_outs}
    lookup = Graph((), {}, {}, producer, tuple(sorted(producer)))
    producers_of = lookup.producers_of
    parents: dict[str, set[str]] = {}
    for name, step in steps.items():
        ups: set[str] = set()
        for dep in step.deps:
            ups |= producers_of(dep)
        ups.discard(name)  # a step reading its own output is no edge
        for i, other in enumerate(step.after):
            if other in steps:
                ups.add(other)
            elif other in pipeline.groups:  # a matrix step or nested pipeline: all of it
                ups.update(pipeline.groups[other])
            else:
                raise PipelineError(
                    f"step {name!r} runs after {other!r}, which is not a step of this pipeline",
                    file=pipeline.file.name,
                    key=f"steps.{step.group or name}.after[{i}]",
                )
        if step.metric_refs:
            ups.update(ref.step for ref in step.metric_refs)  # checked by the parser
        parents[name] = ups
    position = {name: i for i, name in enumerate(steps)}
    # each step's children in file order: its parents are gone through in that order
    children: dict[str, list[str]] = {name: [] for name in steps}
    forward = True  # whether every step comes after its parents in the file
    for name, ups in parents.items():
        at = position[name]
        for up in ups:
            children[up].append(name)
            if position[up] >= at:
                forward = False
    # Kahn's algorithm, taking ready steps in file order, takes them all in file
    # order when the file has each step after its parents (and so no cycle)
    order = list(steps) if forward else _topological(steps, parents, children, position)
    if len(order) != len(steps):
        cycle = _find_cycle(set(steps) - set(order), parents, position)
        raise PipelineError(
            "the steps form a cycle: " + " -> ".join([*cycle, cycle[0]]),
            file=pipeline.file.name,
            key=f"steps.{cycle[0]}",
        )
    return Graph(
        order=tuple(order),
        parents={
            name: tuple(ups) if len(ups) < 2 else _in_file_order(ups, position)
            for name, ups in parents.items()
        },
        children={name: tuple(c) for name, c in children.items()},
        producer=producer,
        out_paths=lookup.out_paths,
        groups=pipeline.groups,
    )


def _in_file_order(names: set[str] | list[str], position: Mapping[str, int]) -> tuple[str, ...]:
    if len(names) < 2:  # most steps have one parent or none: nothing to sort
        return tuple(names)
    return tuple(sorted(names, key=position.__getitem__))


def _topological(
    steps: Mapping[str, object],
    parents: Mapping[str, set[str]],
    children: Mapping[str, list[str]],
    position: Mapping[str, int],
) -> list[str]:
    """Kahn's algorithm, taking ready steps in file order."""
    waiting = {name: len(ups) for name, ups in parents.items()}
    ready = [position[name] for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    names = list(steps)
    order = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for child in children[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, position[child])
    return order


def _find_cycle(
    remaining: set[str], parents: Mapping[str, set[str]], position: Mapping[str, int]
) -> list[str]:
    """Walk parent edges inside the unsorted remainder until a step repeats."""
    start = min(remaining, key=position.__getitem__)
    path: list[str] = []
    index: dict[str, int] = {}
    node = start
    while node not in index:
        index[node] = len(path)
        path.append(node)
        node = min((p for p in parents[node] if p in remaining), key=position.__getitem__)
    cycle = path[index[node] :]
    cycle.reverse()  # parents were walked; print in the direction data flows
    first = min(range(len(cycle)), key=lambda i: position[cycle[i]])
    return cycle[first:] + cycle[:first]  # start at the step written first


def expand(graph: Graph, targets: Iterable[str], *, file: str) -> list[str]:
    """Step names, a matrix step or nested pipeline standing for all of its steps."""
    known = set(graph.order)
    chosen = []
    for target in targets:
        if target in known:
            chosen.append(target)
        elif target in graph.groups:
            chosen.extend(graph.groups[target])
        else:
            raise UsageError(
                f"{file}: there is no step named {target!r} "
                f"(steps: {', '.join(graph.order) or 'none'})"
            )
    return chosen


def select(
    graph: Graph,
    targets: Iterable[str],
    *,
    file: str,
    single: bool = False,
    downstream: bool = False,
) -> list[str]:
    """The steps a command acts on, in topological order.

    No targets: every step.  Targets: they and their upstream; ``single``: only
    them; ``downstream``: they and everything that depends on them.
    """
    targets = expand(graph, targets, file=file)
    if not targets:
        return list(graph.order)
    if single:
        chosen = set(targets)
    elif downstream:
        chosen = graph.downstream(targets)
    else:
        chosen = graph.upstream(targets)
    return graph.sorted(chosen)
