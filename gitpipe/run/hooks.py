"""Hooks: the pipeline file's `[hooks]` commands and the Python API's callables, run
before and after each step and when one fails."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gitpipe.store.runcache import KEY_VAR

if TYPE_CHECKING:
    from gitpipe.run.context import Workspace


@dataclass(frozen=True, slots=True)
class HookCall:
    """What a hook is told: the event, the step, its state and log, the run."""

    event: str  # before_step | after_step | on_failure
    step: str
    state: str  # running (before_step) | ran | cached | failed
    log: str = ""
    run_id: str = ""

    def environ(self) -> dict[str, str]:
        """The same, as the environment a hook command runs with."""
        return {
            "GITPIPE_HOOK": self.event,
            "GITPIPE_STEP": self.step,
            "GITPIPE_STATE": self.state,
            "GITPIPE_LOG": self.log,
            "GITPIPE_RUN_ID": self.run_id,
        }


class Hooks:
    """The hooks of one repro; remembers the failures (one line each)."""

    def __init__(
        self,
        project: Workspace,
        run_id: str,
        calls: Mapping[str, Sequence[Callable[[HookCall], None]]] | None = None,
    ) -> None:
        self.project = project
        self.run_id = run_id
        self.hook_calls = calls or {}
        self.failures: list[str] = []

    def run(self, event: str, step: str, state: str, log: str = "") -> str:
        """Run the pipeline's ``[hooks]`` commands and the API's callables for
        ``event``; the first failure's message ("" when all went well)."""
        commands = getattr(self.project.pipeline.hooks, event)
        calls = self.hook_calls.get(event, ())
        if not (commands or calls):
            return ""
        project = self.project
        logs = project.state_dir / "logs" / self.run_id
        logs.mkdir(parents=True, exist_ok=True)
        call = HookCall(event, step, state, log, self.run_id)
        environ = {k: v for k, v in project.environ.items() if k != KEY_VAR}  # gitpipe's secret
        env = {**environ, **call.environ(), "GITPIPE_ROOT": str(project.root)}
        for command in commands:
            with open(logs / "hooks.log", "ab") as out:
                out.write(f"== {event} {step} ({state}): {command}\n".encode())
                out.flush()
                done = subprocess.run(
                    command,
                    shell=True,
                    cwd=project.root,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    check=False,
                )
            if done.returncode != 0:
                return self._failed(
                    f"{event} hook `{command}` failed for step {step!r} (exit "
                    f"{done.returncode}; see {logs / 'hooks.log'})"
                )
        for function in calls:
            try:
                function(call)
            except Exception as exc:  # a user's callable: any failure is its failure
                return self._failed(
                    f"{event} hook {getattr(function, '__name__', function)!r} failed for "
                    f"step {step!r}: {exc}"
                )
        return ""

    def _failed(self, message: str) -> str:
        self.failures.append(message)
        return message
