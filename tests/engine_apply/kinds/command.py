"""command:local:Command (pulumi-command 1.2): a script run where `pulumi up` runs. Its diff is on its
inputs (no read-back): a change of `triggers` replaces it (create runs again), any other change updates it
(update, else create, runs again). Outputs stdout and stderr, trailing newline trimmed."""

from __future__ import annotations

import os
import subprocess
from typing import Any, Iterable, Optional

from ..client import Context
from ..diff import changed_paths
from ..errors import CommandFailedError
from ..mapping import Schema, to
from ..records import CommandRun, Live
from ..values import anything, boolean, string, string_list, string_map
from .base import Change, Kind

FIELDS = {
    "create": to("@create", string),
    "update": to("@update", string),
    "delete": to("@delete", string),
    "environment": to("@environment", string_map),
    "stdin": to("@stdin", string),
    "triggers": to("@triggers", anything),  # only decides replacement
    "dir": to("@dir", string),
    "interpreter": to("@interpreter", string_list),
    "addPreviousOutputInEnv": to("@addPreviousOutputInEnv", boolean),
}


class Command(Kind):
    type = "command:local:Command"
    schema = Schema(fields=FIELDS, defaults={"": {"interpreter": ["/bin/sh", "-c"], "addPreviousOutputInEnv": True}},
                    force_new=frozenset({"triggers"}))
    on_engine = False

    def plan(self, live: Live, inputs: dict, ignored: Iterable[str]) -> Change:
        paths = changed_paths(self.schema, _inputs(live.state), inputs)
        if not paths:
            return Change("same", [], {**inputs, **live.outputs})
        action = "replace" if any(self.schema.replaces(p) for p in paths) else "update"
        return Change(action, paths, {**inputs, **live.outputs})

    def initial(self, inputs: dict) -> dict:
        return dict(inputs)

    def create(self, ctx: Context, live: Live, planned: dict) -> None:
        inputs = _inputs(planned)
        _, params = self.body(live, inputs)
        outputs = self._run(ctx, live, "create", params["create"], params, previous=None) if params.get("create") else {}
        live.state = {**inputs, **outputs}

    def update(self, ctx: Context, live: Live, planned: dict) -> None:
        inputs = _inputs(planned)
        _, params = self.body(live, inputs)
        script = params.get("update") or params.get("create")
        # A failed run leaves the recorded state as it was (the provider returns no new state).
        outputs = self._run(ctx, live, "update", script, params, previous=live.outputs) if script else {}
        live.state = {**inputs, **outputs}

    def delete(self, ctx: Context, live: Live) -> None:
        _, params = self.body(live, _inputs(live.state))
        if params.get("delete"):
            self._run(ctx, live, "delete", params["delete"], params, previous=live.outputs)

    @staticmethod
    def _run(ctx: Context, live: Live, phase: str, script: str, params: dict, previous: Optional[dict]) -> dict[str, Any]:
        env = {**os.environ, **params.get("environment", {})}
        if previous is not None and params.get("addPreviousOutputInEnv", True):
            env["PULUMI_COMMAND_STDOUT"] = previous.get("stdout", "")
            env["PULUMI_COMMAND_STDERR"] = previous.get("stderr", "")
        try:
            done = subprocess.run([*params.get("interpreter", ["/bin/sh", "-c"]), script], input=params.get("stdin"),
                                  env=env, cwd=params.get("dir"), capture_output=True, text=True, timeout=ctx.command_timeout)
        except subprocess.TimeoutExpired as error:
            raise CommandFailedError(live.name, phase, -1, str(error.stdout or ""),
                                     f"timed out after {ctx.command_timeout}s\n{error.stderr or ''}") from None
        run = CommandRun(live.name, phase, script, done.returncode, done.stdout.removesuffix("\n"), done.stderr.removesuffix("\n"))
        ctx.result.runs.append(run)
        if phase != "delete":
            ctx.result.commands[live.name] = run
        if done.returncode != 0:
            raise CommandFailedError(live.name, phase, done.returncode, done.stdout, done.stderr)
        return {"stdout": run.stdout, "stderr": run.stderr}


def _inputs(state: dict) -> dict:
    return {k: v for k, v in state.items() if k not in ("stdout", "stderr")}
