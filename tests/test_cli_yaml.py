"""The offline tools read stack files as the Pulumi CLI does (gopkg.in/yaml.v3, Go JSON), not as
PyYAML (YAML 1.1) would: checked against a table from the CLI's source and against golden outputs of
a Go harness that ran the CLI's own YAML, JSON and schema libraries (tests/data/cli_yaml_golden.json).
"""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from carecircle.cli_yaml import CliConfigError, config_set_path_value, program_config
from carecircle.offline import evaluate_stack
from carecircle.settings import ConfigError
from carecircle.stackfiles import StackFileError, load_stack_config

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT = "name: proj\nruntime: python\n"
GOLDEN = json.loads((Path(__file__).parent / "data" / "cli_yaml_golden.json").read_text())


def decrypt(key: str, ciphertext: str) -> str:
    return f"DECRYPTED({ciphertext})"


def program_gets(value_yaml: str, project: str = PROJECT):
    """(text, secret?) the program gets for `k: <value_yaml>` in Pulumi.dev.yaml, or ("ERROR", message)."""
    stack = "config:\n" + "".join(f"  {line}\n" for line in f"k: {value_yaml}".splitlines())
    try:
        config, secret, _ = program_config(project, stack, "dev", decrypt)
    except CliConfigError as error:
        return "ERROR", str(error)
    return config["proj:k"], "proj:k" in secret


@pytest.mark.parametrize("value, expected", [
    ("3", ("3", False)), ("010", ("8", False)), ("0o10", ("8", False)), ("0x1F", ("31", False)),
    ("1:30", ("1:30", False)), ("1_000", ("1000", False)), ("1e3", ("1000", False)), ("3.0", ("3", False)),
    ("yes", ("yes", False)), ("on", ("on", False)), ("y", ("y", False)), ("True", ("true", False)), ("TRUE", ("true", False)),
    ("~", ("", False)), ("null", ("", False)), ("", ("", False)), ('"010"', ("010", False)), ("'yes'", ("yes", False)),
    ("2024-01-01", ("2024-01-01 00:00:00 +0000 UTC", False)),
    ("|\n  line1\n  line2", ("line1\nline2\n", False)),
    ("[1.0, 2.5, 1e3, true, yes, 010, null, 'a<b']", ('[1,2.5,1000,true,"yes",8,null,"a\\u003cb"]', False)),
    ("{z: 1, a: {y: 1.50, x: ~}}", ('{"a":{"x":null,"y":1.5},"z":1}', False)),
    ("{user: u, password: {secure: ct}}", ('{"password":"DECRYPTED(ct)","user":"u"}', True)),
    ("{secure: ct}", ("DECRYPTED(ct)", True)),
    ("0123", ("83", False)), ("-0.0", ("0", False)), ("1e21", ("1e+21", False)), ("[12345678901234567890]", ("[12345678901234567000]", False)),
])
def test_what_the_program_gets_for_a_stack_value(value, expected):
    assert program_gets(value) == expected


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "[1, .inf]"])
def test_infinities_and_nan_are_refused_as_the_cli_refuses_them(value):
    text, message = program_gets(value)
    assert text == "ERROR" and "unsupported value" in message


@pytest.mark.parametrize("stack, words", [
    ("config:\n  a: 1\n  a: 2\n", 'mapping key "a" already defined at line 2'),
    ("config:\n  - a\n", "cannot unmarshal !!seq into map"),
    ("config: foo\n", "could not unmarshal map"),
    ("config:\n  a:b:c: 1\n", "could not parse a:b:c as a configuration key"),
    ("config:\n  a: 1\n  proj:a: 2\n", "given twice"),
])
def test_stack_files_the_cli_refuses(stack, words):
    with pytest.raises(CliConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        program_config(PROJECT, stack, "dev", decrypt)


def test_a_float_in_the_project_config_is_refused_like_the_cli_does():
    with pytest.raises(CliConfigError, match="oneOf failed"):
        program_config(PROJECT + "config:\n  rate: 0.1\n", "", "dev", decrypt)
    assert program_config(PROJECT + "config:\n  rate: \"0.1\"\n", "", "dev", decrypt)[0] == {"proj:rate": "0.1"}


@pytest.mark.parametrize("text, expected", [("true", True), ("3", 3), ("010", "010"), ("3.5", "3.5"), ("True", "True")])
def test_config_set_path_types_values_like_the_cli(text, expected):
    assert config_set_path_value(text) == expected and type(config_set_path_value(text)) is type(expected)


def test_golden_outputs_of_the_clis_own_libraries():
    """Every case the Go harness ran (161): same config and secret keys, or both refuse the files."""
    assert len(GOLDEN) > 100
    for case in GOLDEN:
        want = case["harness"]
        try:
            config, secret, _ = program_config(case["project"], case["stack"], "dev", decrypt)
            got = {"config": config, "secretKeys": sorted(secret)}
        except CliConfigError as error:
            got = {"error": str(error)}
        assert ("error" in want) == ("error" in got), (case["name"], want, got)
        if "error" not in got:
            assert (got["config"], got["secretKeys"]) == (want["config"], want["secretKeys"]), case["name"]


# ---- our own stack files: where YAML 1.1 (PyYAML) and the CLI differ, the offline tools follow the CLI


def copy_of_repository_stacks(tmp_path: Path, stack_lines: str) -> Path:
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.staging.yaml", "Pulumi.prod.yaml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    with (tmp_path / "Pulumi.dev.yaml").open("a") as stack_file:
        stack_file.write(stack_lines)
    return tmp_path


def test_yes_is_text_for_the_cli_and_refused_as_a_boolean(tmp_path):
    root = copy_of_repository_stacks(tmp_path, "  carecircle:gatewayCorsAllowCredentials: yes\n")
    assert yaml.safe_load("k: yes")["k"] is True  # what PyYAML would have handed over
    assert load_stack_config("dev", root)[1]["carecircle:gatewayCorsAllowCredentials"] == "yes"
    with pytest.raises(ConfigError, match="carecircle:gatewayCorsAllowCredentials: must be true or false"):
        evaluate_stack("dev", root)


def test_sexagesimal_is_text_for_the_cli(tmp_path):
    root = copy_of_repository_stacks(tmp_path, "  carecircle:gatewayProxyReadTimeout: 1:30\n")
    assert yaml.safe_load("k: 1:30")["k"] == 90  # YAML 1.1
    assert load_stack_config("dev", root)[1]["carecircle:gatewayProxyReadTimeout"] == "1:30"
    with pytest.raises(ConfigError, match="gatewayProxyReadTimeout: must be an nginx time"):
        evaluate_stack("dev", root)


def test_duplicate_keys_in_a_stack_file_stop_the_offline_tools(tmp_path):
    root = copy_of_repository_stacks(tmp_path, "  carecircle:apiPort: 3001\n  carecircle:apiPort: 3002\n")
    with pytest.raises(StackFileError, match="already defined"):
        load_stack_config("dev", root)


def test_committed_stack_files_are_what_the_cli_accepts():
    for stack in ("dev", "staging", "prod"):
        _, config, _ = load_stack_config(stack)
        assert config["carecircle:traceSampleRate"] in ("0.1", "1")
