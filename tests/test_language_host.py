"""The program runs the way the Pulumi CLI's language host runs it: a fresh interpreter, cwd at
the project directory, config in PULUMI_CONFIG, `runpy.run_path("infra", run_name="__main__")`,
with infra/ (not the repository root) on sys.path."""

import json
import os
import subprocess
import sys
import textwrap

from carecircle.stackfiles import load_stack_config
from conftest import REPO_ROOT

HOST = textwrap.dedent("""
    import json, os, runpy, sys
    sys.path = [p for p in sys.path if p not in ("", os.getcwd())]
    import pulumi
    from pulumi.runtime.stack import wait_for_rpcs
    from pulumi.runtime.sync_await import _sync_await

    declared = []

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args):
            state = dict(args.inputs)
            if args.typ.startswith("docker:") and "name" not in state:  # the engine's autonaming
                state["name"] = args.name + "-a1b2c3d"
            declared.append(state.get("name", args.name))
            if args.typ == "random:index/randomId:RandomId":  # the engine returns the generated value
                state["hex"] = "ab" * int(args.inputs["byteLength"])
            elif args.typ.startswith("random:"):
                state["result"] = "r" * int(args.inputs["length"])
            return args.name + "-id", state
        def call(self, args):
            return {}

    pulumi.runtime.set_all_config(json.loads(os.environ["PULUMI_CONFIG"]), json.loads(os.environ["PULUMI_CONFIG_SECRET_KEYS"]))
    pulumi.runtime.set_mocks(Mocks(), project="carecircle", stack=os.environ["STACK"], preview=False)
    try:
        runpy.run_path("infra", run_name="__main__")
        _sync_await(wait_for_rpcs())
    except pulumi.RunError as error:  # the language host prints a RunError's message alone
        print(error, file=sys.stderr)
        print(json.dumps(declared))
        sys.exit(32)
    # The package came from infra/, found through the path entry the language host sets.
    assert sys.modules["carecircle"].__file__ == os.path.join(os.getcwd(), "infra", "carecircle", "__init__.py")
    print(json.dumps(declared))
    print("modules loaded: " + json.dumps(sorted(m for m in sys.modules if m.startswith("carecircle"))), file=sys.stderr)
""")


def run_like_the_cli(stack, change=None):
    _, config, secret_keys = load_stack_config(stack)
    config.update(change or {})
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(STACK=stack, PULUMI_CONFIG=json.dumps(config), PULUMI_CONFIG_SECRET_KEYS=json.dumps(sorted(secret_keys)))
    return subprocess.run([sys.executable, "-c", HOST], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_program_runs_from_infra_without_the_repository_root_on_sys_path():
    result = run_like_the_cli("prod")
    assert result.returncode == 0, result.stderr
    declared = json.loads(result.stdout)
    assert "carecircle-prod-gateway-2" in declared and "carecircle-prod-api-blue-a1b2c3d" in declared


def test_pulumi_up_loads_no_auditor_tooling():
    # The deploy path stays small: report, diff, docs and policy checks live in carecircle.audit,
    # which only infra/cli.py imports (import time in docs/benchmarks.md).
    for stack in ("dev", "prod"):
        result = run_like_the_cli(stack)
        assert result.returncode == 0, result.stderr
        # Found by its prefix: the mocks' thread event loops may add noise to stderr at exit.
        loaded = json.loads(next(line for line in result.stderr.splitlines() if line.startswith("modules loaded: "))
                            .removeprefix("modules loaded: "))
        assert "carecircle.settings" in loaded and "carecircle.program" in loaded
        assert [m for m in loaded if m.startswith("carecircle.audit") or m in ("carecircle.cli_yaml", "carecircle.stackfiles")] == [], stack


def test_bad_config_under_the_cli_is_one_message_without_traceback():
    result = run_like_the_cli("prod", {"carecircle:apiBlueReplicas": "1"})
    assert result.returncode == 32
    assert "Traceback" not in result.stderr
    assert "carecircle:apiBlueReplicas" in result.stderr and "pulumi config set carecircle:apiBlueReplicas 2 --stack prod" in result.stderr
    assert json.loads(result.stdout) == []
