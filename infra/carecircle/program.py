"""What `pulumi up` runs: load the stack's settings, then declare it on its platform (an engine, or a
Swarm). The two platforms are siblings; what they share sits below both (declarations.py)."""

from __future__ import annotations

from typing import Any

import pulumi

from .engine_program import declare_engine
from .settings import Settings, load_settings
from .swarm_program import declare_swarm


def declare(settings: Settings) -> dict[str, Any]:
    """Declare every resource of the stack; returns the stack outputs."""
    return declare_swarm(settings) if settings.platform == "swarm" else declare_engine(settings)


def declare_stack() -> None:
    """Load this stack's settings (ConfigError before anything is declared) and declare it."""
    for name, value in declare(load_settings()).items():
        pulumi.export(name, value)
