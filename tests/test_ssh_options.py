"""docker:sshOpts judged by ssh's own rules: the reading in settings/ssh_options.py against `ssh -G`
(OpenSSH prints the configuration it would connect with), the staging/prod rule that every node's host
key is verified, and the providers the program declares getting the same flags as the default one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carecircle.offline import evaluate_stack
from carecircle.settings import ConfigError
from carecircle.settings.ssh_options import KEYWORDS, SshOptionsError, host_key_checking, provider_flags

PROVIDER = "pulumi:providers:docker"
SSH = shutil.which("ssh")
needs_ssh = pytest.mark.skipif(SSH is None and not os.environ.get("CI"), reason="ssh (openssh-client) is not installed")

# ssh -G's words for each StrictHostKeyChecking state (readconf.c fmt_multistate_int)
SSH_G_STRICT = {"yes": "true", "off": "false", "ask": "ask", "accept-new": "accept-new"}


def test_the_provider_appends_its_timeout_and_no_tty_unless_given():
    # docker/cli cli/connhelper/connhelper.go addSSHTimeout, disablePseudoTerminalAllocation
    assert provider_flags(["-v"]) == ["-v", "-o ConnectTimeout=30", "-T"]
    assert provider_flags(["-o", "ConnectTimeout=5", "-T"]) == ["-o", "ConnectTimeout=5", "-T"]


def ssh_reads(argv: list[str]) -> dict[str, str] | None:
    """What ssh makes of the provider's command line with these flags (`ssh -G`, no config file); None
    when ssh refuses it."""
    done = subprocess.run([SSH or "ssh", "-F", "/dev/null", "-G", *provider_flags(argv), "-l", "deploy", "--", "node.invalid"],
                          capture_output=True, text=True, timeout=10, env={"HOME": "/nonexistent", "PATH": os.environ["PATH"]})
    if done.returncode != 0:
        return None
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


def our_reading(argv: list[str]) -> tuple[str, tuple[str, ...] | None] | None:
    try:
        checking = host_key_checking(argv)
    except SshOptionsError:
        return None
    return SSH_G_STRICT[checking.strict or "ask"], checking.known_hosts


def ssh_reading(argv: list[str]) -> tuple[str, tuple[str, ...] | None] | None:
    read = ssh_reads(argv)
    if read is None:
        return None
    given_files = any("userknownhostsfile" in element.lower() for element in argv)
    return read["stricthostkeychecking"], tuple(read["userknownhostsfile"].split()) if given_files else None


HOST_KEY_OPTIONS = ["StrictHostKeyChecking", "stricthostkeychecking", "STRICTHOSTKEYCHECKING", "UserKnownHostsFile", "userknownhostsfile"]
VALUES = ["no", "NO", "off", "yes", "true", "False", "ask", "accept-new", "maybe", "/dev/null", "none", "/tmp/known",
          '"no"', "'off'", "/dev/null /tmp/known", ""]
SEPARATORS = ["=", " = ", " ", "==", "\t"]


@st.composite
def option_lists(draw) -> list[str]:
    argv: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["o-split", "o-joined", "o-cluster", "flag", "with-argument", "other-o"]))
        option = draw(st.sampled_from(HOST_KEY_OPTIONS)) + draw(st.sampled_from(SEPARATORS)) + draw(st.sampled_from(VALUES))
        if kind == "o-split":
            argv += ["-o", option]
        elif kind == "o-joined":
            argv += ["-o" + option]
        elif kind == "o-cluster":
            argv += [draw(st.sampled_from(["-vo", "-4o", "-qTo"])), option]
        elif kind == "flag":
            argv += [draw(st.sampled_from(["-v", "-4", "-C", "-Z", "-vv"]))]
        elif kind == "with-argument":
            argv += draw(st.sampled_from([["-i", "/tmp/id"], ["-i/tmp/id"], ["-p", "2222"], ["-c", "aes128-ctr"]]))
        else:
            argv += ["-o", draw(st.sampled_from(["ServerAliveInterval=30", "ConnectTimeout=5", "BatchMode=yes"]))]
    return argv


@needs_ssh
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(option_lists())
def test_the_settings_read_ssh_options_as_ssh_does(argv):
    # Options only, each complete: a stray word, or a flag left without its value, is refused here
    # although ssh would take it as the host, or the provider's next flag as the value (tested below).
    assert our_reading(argv) == ssh_reading(argv), argv


@needs_ssh
@pytest.mark.parametrize("argv", [
    ["-o", "StrictHostKeyChecking=no"], ["-oStrictHostKeyChecking=off"], ["-o", "stricthostkeychecking No"],
    ["-vo", "StrictHostKeyChecking=false"], ["-o", "StrictHostKeyChecking=no", "-o", "StrictHostKeyChecking=yes"],
    ["-o", "StrictHostKeyChecking=accept-new", "-o", "UserKnownHostsFile=/dev/null"],
    ["-o", "UserKnownHostsFile=none", "-o", "StrictHostKeyChecking=accept-new"],
])
def test_each_form_of_accepting_any_host_key_is_seen(argv):
    # Stated once, so a change of the strategy above never loses them: ssh reads them as we do, and
    # each lets any host key through.
    assert our_reading(argv) == ssh_reading(argv)
    assert host_key_checking(argv).disabled_by


@needs_ssh
def test_the_keywords_are_the_ones_ssh_takes_on_its_command_line():
    printed = {line.split(" ", 1)[0].lower() for line in subprocess.run(
        [SSH or "ssh", "-F", "/dev/null", "-G", "node.invalid"], capture_output=True, text=True, timeout=10).stdout.splitlines()}
    printed.discard("host")  # the host it would connect to, not an option
    assert printed <= KEYWORDS, sorted(printed - KEYWORDS)  # an ssh that knows more than this list: add them
    for keyword in sorted(KEYWORDS):
        refused = subprocess.run([SSH or "ssh", "-F", "/dev/null", "-G", "-o", f"{keyword}=zz", "node.invalid"],
                                 capture_output=True, text=True, timeout=10).stderr
        assert "Bad configuration option" not in refused and "not supported" not in refused, (keyword, refused)
    for keyword in ("host", "match", "include", "serveralive"):
        assert keyword not in KEYWORDS


def problems(stack: str, ssh_opts: list[str]) -> str:
    with pytest.raises(ConfigError) as refused:
        evaluate_stack(stack, overrides={"docker:sshOpts": json.dumps(ssh_opts)})
    return str(refused.value)


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_staging_and_prod_refuse_flags_that_accept_any_host_key_and_suggest_the_rest(stack):
    message = problems(stack, ["-o", "ServerAliveInterval=30", "-o", "StrictHostKeyChecking=no"])
    assert f"docker:sshOpts: -o 'StrictHostKeyChecking=no' lets ssh accept any host key: in {stack}" in message
    assert f'fix: set docker:sshOpts in Pulumi.{stack}.yaml, e.g. ["-o", "ServerAliveInterval=30"]' in message
    assert "Traceback" not in message and "nothing was declared" in message
    message = problems(stack, ["-o", "StrictHostKeyChecking=accept-new", "-o", "UserKnownHostsFile=/dev/null"])
    assert "-o 'StrictHostKeyChecking=accept-new' with -o 'UserKnownHostsFile=/dev/null' lets ssh accept any host key" in message
    assert f"fix: pulumi config rm docker:sshOpts --stack {stack}" in message


def test_dev_may_skip_host_keys_and_every_stack_keeps_checking_ones_that_verify():
    evaluate_stack("dev", overrides={"docker:sshOpts": json.dumps(["-o", "StrictHostKeyChecking=no"])})
    # accept-new with the real known_hosts is trust on first use, then a checked key: allowed everywhere
    evaluate_stack("prod", overrides={"docker:sshOpts": json.dumps(["-o", "StrictHostKeyChecking=accept-new"])})
    # the first value wins, as in ssh: "yes" then "no" checks the key
    evaluate_stack("prod", overrides={"docker:sshOpts": json.dumps(["-o", "StrictHostKeyChecking=yes", "-o", "StrictHostKeyChecking=no"])})


@pytest.mark.parametrize("ssh_opts, said", [
    (["deploy@edge-1"], "'deploy@edge-1' is not an ssh option: the provider puts the user, port and host after these"),
    (["-Z"], "ssh has no option -Z"),
    (["-o"], "-o needs a value after it"),
    (["-v", "-J"], "-J needs a value after it"),
    (["-o", "StrictHostKeyChecking=maybe"], "StrictHostKeyChecking takes yes, no, ask, accept-new or off"),
    (["-o", "StrictHostKeyChecking"], "is not Keyword=value"),
    (["-o", "bad\nline"], "visible ASCII with spaces inside only"),
    (["-o", " StrictHostKeyChecking=yes"], "visible ASCII with spaces inside only"),  # ssh would trim it; say so
    (["-o", "ServerAlive Interval=30"], "ssh has no option 'ServerAlive'"),
    (["-o", "Host=edge-1"], "ssh has no option 'Host'"),
])
def test_options_ssh_would_refuse_are_refused_in_every_environment(ssh_opts, said):
    message = problems("dev", ssh_opts)
    assert "docker:sshOpts" in message and said in message


def test_every_node_provider_the_program_declares_gets_the_stacks_ssh_flags():
    flags = ["-o", "ServerAliveInterval=30", "-i", "/home/deploy/.ssh/carecircle"]
    prod = evaluate_stack("prod", overrides={"docker:sshOpts": json.dumps(flags)})
    providers = prod.of_type(PROVIDER)
    assert {p.name for p in providers} == {"edge-node-1", "edge-node-2", "monitoring-node-1", "monitoring-node-2"}
    for provider in providers:
        assert json.loads(provider.inputs["sshOpts"]) == flags  # (a provider's inputs reach the engine as JSON text)
    assert all("sshOpts" not in p.inputs for p in evaluate_stack("prod").of_type(PROVIDER))
