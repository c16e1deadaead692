"""What the applier refuses, and what the engine or a command answered with."""

from __future__ import annotations


class EngineApplyError(Exception):
    """Anything the applier refuses or the engine rejected."""


class UnmappedInputError(EngineApplyError):
    def __init__(self, resource: str, type_: str, path: str, reason: str = "is not mapped to the Docker Engine API"):
        self.resource, self.type, self.path = resource, type_, path
        super().__init__(f"{type_} {resource!r}: input {path!r} {reason}; engine_apply refuses to drop it silently")


class UnsupportedResourceError(EngineApplyError):
    pass


class ProtectedResourceError(EngineApplyError):
    pass


class EngineError(EngineApplyError):
    """The Docker engine refused a request; `explanation` is the engine's own message."""

    def __init__(self, message: str, explanation: str = ""):
        self.explanation = explanation
        super().__init__(message)


class CommandFailedError(EngineApplyError):
    def __init__(self, name: str, phase: str, exit_code: int, stdout: str, stderr: str):
        self.name, self.phase, self.exit_code, self.stdout, self.stderr = name, phase, exit_code, stdout, stderr
        super().__init__(f"command:local:Command {name!r} ({phase}) exited with {exit_code}; stderr:\n{stderr}")


class ConvergeError(EngineApplyError):
    """A service with convergeConfig did not converge, or its update rolled back or paused."""


class ContainerHealthError(EngineApplyError):
    pass
