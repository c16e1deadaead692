"""Offline tools for CareCircle's stacks; no Pulumi CLI, Docker or credentials needed.

    python infra/cli.py offline prod                           one line per declared resource
    python infra/cli.py report --stack prod [--format markdown|json|terminal]
    python infra/cli.py diff --stack prod --against staging    what prod declares differently from staging
    python infra/cli.py diff --stack prod --base origin/main   what this checkout changes in prod
    python infra/cli.py docs [--check]                         regenerate the generated docs
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import Optional

import typer
from rich.console import Console
from rich.markdown import Markdown

from carecircle.audit import diffing, reference
from carecircle.audit import report as environment_report
from carecircle.offline import evaluate_stack, stack_settings
from carecircle.settings import ConfigError
from carecircle.stackfiles import REPO_ROOT, StackFileError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help=__doc__.split("\n\n")[0])


class Format(str, Enum):
    terminal = "terminal"
    markdown = "markdown"
    json = "json"


def _fail(message: str) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code=2)


def _show(markdown_text: str, json_text: str, output: Format, terminal_text: Optional[str] = None) -> None:
    if output is Format.json:
        typer.echo(json_text, nl=False)
    elif output is Format.markdown:
        typer.echo(markdown_text, nl=False)
    else:
        Console().print(Markdown(terminal_text or markdown_text))


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
def report(
    stack: str = typer.Option(..., "--stack", help="Stack to report on."),
    output: Format = typer.Option(Format.terminal, "--format", help="terminal, markdown or json."),
) -> None:
    """What STACK declares: services, exposure, networks, volumes, secrets (names only), routes, policy."""
    try:
        data = environment_report.build(evaluate_stack(stack), stack_settings(stack))
    except (ConfigError, StackFileError) as error:
        _fail(str(error))
    markdown = environment_report.markdown(data)
    # A terminal shows a Mermaid chart as its source: point to where the picture is drawn instead.
    committed = REPO_ROOT / "docs" / "environments" / f"{stack}.md"
    pointer = environment_report.diagram_pointer(stack, committed.exists() and committed.read_text() == markdown)
    _show(markdown, environment_report.as_json(data), output, environment_report.markdown(data, diagram=pointer))


@app.command()
def diff(
    stack: str = typer.Option(..., "--stack", help="Stack to compare."),
    against: Optional[str] = typer.Option(None, "--against", help="Another stack, e.g. staging."),
    base: Optional[str] = typer.Option(None, "--base", help="A git revision of this repository, e.g. origin/main."),
    output: Format = typer.Option(Format.terminal, "--format", help="terminal, markdown or json."),
) -> None:
    """What changes between two stacks (--against) or between a git revision and this checkout (--base),
    and whether each change replaces a container, updates in place or changes nothing live."""
    if (against is None) == (base is None):
        _fail("give exactly one of --against STACK or --base REVISION")
    try:
        after = diffing.snapshot(evaluate_stack(stack))
        if against is not None:
            before, title = diffing.snapshot(evaluate_stack(against)), f"{against} → {stack}"
        else:
            before, title = diffing.snapshot_at_revision(stack, base), f"{stack}: {base} → this checkout"  # type: ignore[arg-type]
    except (ConfigError, StackFileError, diffing.RevisionError) as error:
        _fail(str(error))
    changes = diffing.diff(before, after, across_stacks=against is not None)
    if output is Format.terminal:
        typer.echo(diffing.text(changes), nl=False)
    else:
        _show(diffing.markdown(title, changes), diffing.as_json(changes), output)


@app.command(hidden=True)
def evaluate(stack: str) -> None:
    """Machine interface for `diff --base`: the stack's declared resources as JSON, secrets masked."""
    try:
        typer.echo(json.dumps(diffing.snapshot(evaluate_stack(stack)), default=str))
    except (ConfigError, StackFileError) as error:
        _fail(str(error))


@app.command()
def docs(check: bool = typer.Option(False, "--check", help="Fail if the committed files are stale instead of writing them.")) -> None:
    """Regenerate the config reference and schema, the environment reports and the blast-radius table."""
    stale = []
    try:
        documents = reference.documents(REPO_ROOT)
    except (ConfigError, StackFileError) as error:
        _fail(str(error))
    for path, content in documents.items():
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
