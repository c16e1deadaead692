"""Offline tools for CareCircle's stacks; no Pulumi CLI, Docker or credentials needed.

    python infra/cli.py offline dev        what the dev stack declares, one line per resource
    python infra/cli.py docs               regenerate the generated docs (config reference, schema, blast radius)
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from carecircle import reference
from carecircle.offline import evaluate_stack
from carecircle.settings import ConfigError
from carecircle.stackfiles import REPO_ROOT, StackFileError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__.split("\n\n")[0])


def _fail(message: str) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code=2)


@app.command()
def offline(stack: str = typer.Argument(..., help="Stack name: dev, staging, prod or any Pulumi.<stack>.yaml.")) -> None:
    """Evaluate STACK under Pulumi's mocks and print what it declares (secret values never shown)."""
    try:
        evaluation = evaluate_stack(stack)
    except (ConfigError, StackFileError) as error:
        _fail(str(error))
    for resource in sorted(evaluation.resources, key=lambda r: (r.type, r.name)):
        flags = [flag for flag, on in (("protected", resource.protect), ("secret inputs: " + ",".join(sorted(resource.secret_inputs)), bool(resource.secret_inputs))) if on]
        name = resource.inputs.get("name", "")
        typer.echo(f"{resource.type:45} {resource.name:22} {name:32} {' '.join(flags)}".rstrip())
    for key, value in sorted(evaluation.outputs.items()):
        typer.echo(f"output {key} = {'[secret]' if key in evaluation.secret_outputs else value}")


@app.command()
def docs(check: bool = typer.Option(False, "--check", help="Fail if the committed files are stale instead of writing them.")) -> None:
    """Regenerate docs/config.schema.json, docs/config-reference.md and the blast-radius table in docs/releases.md."""
    stale = []
    for path, content in reference.documents(REPO_ROOT).items():
        if check:
            if not path.exists() or path.read_text() != content:
                stale.append(path.relative_to(REPO_ROOT))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            typer.echo(f"wrote {path.relative_to(REPO_ROOT)}")
    if stale:
        _fail(f"stale: {', '.join(map(str, stale))}; run: python infra/cli.py docs")


if __name__ == "__main__":
    sys.exit(app())
