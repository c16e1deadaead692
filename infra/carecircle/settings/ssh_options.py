"""docker:sshOpts read the way ssh(1) reads them.

The docker provider puts these strings, one argv element each, in front of its own flags and the host
(kreuzwerker terraform-provider-docker internal/provider/config.go: connhelper.GetConnectionHelperWithSSHOpts;
docker/cli cli/connhelper/connhelper.go: `ssh <sshOpts> -o ConnectTimeout=30 -T -l <user> -- <host> docker
system dial-stdio`). So ssh's own rules decide what they mean: getopt over ssh's option letters
(OpenSSH ssh.c), `-o Keyword=value` or `-o "Keyword value"` with the keyword and the value in any case
(readconf.c process_config_line), and for each keyword the first value given wins. `ssh -G` prints the
result; tests/test_ssh_options.py holds this module to it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Optional

# OpenSSH 9 ssh.c getopt string: letters followed by ':' take an argument.
_GETOPT = "1246ab:c:e:fgi:kl:m:no:p:qstvxAB:CD:E:F:GI:J:KL:MNO:P:Q:R:S:TVw:W:XYy"
_FLAGS = {letter for letter in re.sub(r".:", "", _GETOPT)}
_WITH_ARGUMENT = {match[0] for match in re.findall(r".:", _GETOPT)}
# readconf.c multistate_strict_hostkey: the spellings ssh accepts, and what each means.
_STRICT_HOST_KEY = {"true": "yes", "yes": "yes", "false": "off", "no": "off", "off": "off", "ask": "ask",
                    "accept-new": "accept-new"}
# The keywords OpenSSH 9 takes after -o (readconf.c keywords[], lower case; Host, Match and Include are
# refused on the command line). tests/test_ssh_options.py holds the list to the installed ssh.
KEYWORDS = frozenset("""
    addkeystoagent addressfamily afstokenpassing batchmode bindaddress bindinterface canonicaldomains
    canonicalizefallbacklocal canonicalizehostname canonicalizemaxdots canonicalizepermittedcnames
    casignaturealgorithms certificatefile challengeresponseauthentication checkhostip cipher ciphers
    clearallforwardings compression compressionlevel connectionattempts connecttimeout controlmaster
    controlpath controlpersist dsaauthentication dynamicforward enableescapecommandline enablesshkeysign
    escapechar exitonforwardfailure fallbacktorsh fingerprinthash forkafterauthentication forwardagent
    forwardx11 forwardx11timeout forwardx11trusted gatewayports globalknownhostsfile
    globalknownhostsfile2 gssapiauthentication gssapiclientidentity gssapidelegatecredentials
    gssapikexalgorithms gssapikeyexchange gssapirenewalforcesrekey gssapiserveridentity gssapitrustdns
    hashknownhosts hostbasedacceptedalgorithms hostbasedauthentication hostbasedkeytypes
    hostkeyalgorithms hostkeyalias hostname identitiesonly identityagent identityfile identityfile2
    ignoreunknown ipqos kbdinteractiveauthentication kbdinteractivedevices kerberosauthentication
    kerberostgtpassing kexalgorithms knownhostscommand localforward loglevel logverbose macs
    nohostauthenticationforlocalhost numberofpasswordprompts passwordauthentication permitlocalcommand
    permitremoteopen pkcs11provider port preferredauthentications protocol protocolkeepalives
    proxycommand proxyjump proxyusefdpass pubkeyacceptedalgorithms pubkeyacceptedkeytypes
    pubkeyauthentication rekeylimit remotecommand remoteforward requesttty requiredrsasize
    revokedhostkeys rhostsauthentication rhostsrsaauthentication securitykeyprovider serveralivecountmax
    serveraliveinterval sessiontype setuptimeout skeyauthentication smartcarddevice stdinnull
    streamlocalbindmask streamlocalbindunlink stricthostkeychecking syslogfacility tcpkeepalive
    tisauthentication tunnel tunneldevice updatehostkeys useblacklistedkeys useprivilegedport user
    userknownhostsfile userknownhostsfile2 useroaming usersh verifyhostkeydns visualhostkey
    xauthlocation
""".split())
# Known-hosts files that hold no key: nothing can be verified against them.
_NO_KEYS = {"/dev/null", "none"}


class SshOptionsError(ValueError):
    """The options are not what ssh accepts (ssh would exit with its usage instead of connecting)."""


@dataclass(frozen=True)
class HostKeyChecking:
    """What the options say about the server's host key; None where they leave it to the user's ssh
    config or ssh's default (ask, ~/.ssh/known_hosts)."""

    strict: Optional[str] = None  # yes | off | ask | accept-new
    known_hosts: Optional[tuple[str, ...]] = None
    first: dict[str, str] = field(default_factory=dict)  # lower-case keyword -> the -o text ssh takes
    # lower-case keyword -> the argv positions of every -o of it; None when one shares an element with
    # another flag (-vo ...)
    positions: dict[str, Optional[frozenset[int]]] = field(default_factory=dict)

    @property
    def disabled_by(self) -> list[str]:
        """The keywords whose options let any host key through (none: the key is checked)."""
        if self.strict == "off":
            return ["stricthostkeychecking"]
        if self.strict == "accept-new" and self.known_hosts and set(self.known_hosts) <= _NO_KEYS:
            # A new key is accepted and written nowhere: every key is new, every time.
            return ["stricthostkeychecking", "userknownhostsfile"]
        return []

    def described(self, keywords: list[str]) -> str:
        return " with ".join(f"-o {self.first[keyword]!r}" for keyword in keywords)

    def without(self, argv: list[str], keywords: list[str]) -> Optional[list[str]]:
        """`argv` without any option of these keywords, or None when that cannot be cut out cleanly."""
        cut: set[int] = set()
        for keyword in keywords:
            positions = self.positions[keyword]
            if positions is None:
                return None
            cut |= positions
        return [element for index, element in enumerate(argv) if index not in cut]


def _config_option(text: str) -> tuple[str, list[str]]:
    """(lower-case keyword, value words) of one -o argument."""
    match = re.fullmatch(r"\s*([^\s=]+)(?:\s*=\s*|\s+)(.*?)\s*", text, flags=re.DOTALL)
    if not match or not match.group(2):
        raise SshOptionsError(f"-o {text!r} is not Keyword=value")
    if match.group(1).lower() not in KEYWORDS:
        raise SshOptionsError(f"-o {text!r}: ssh has no option {match.group(1)!r}")
    try:
        words = shlex.split(match.group(2))
    except ValueError:
        raise SshOptionsError(f"-o {text!r} has an unbalanced quote") from None
    return match.group(1).lower(), words


def _strict(words: list[str]) -> Optional[str]:
    return _STRICT_HOST_KEY.get(words[0].lower()) if len(words) == 1 else None


def provider_flags(ssh_opts: list[str]) -> list[str]:
    """The flags the provider gives ssh before `-l <user> -- <host>`: these options, then (docker/cli
    connhelper.go addSSHTimeout, disablePseudoTerminalAllocation) a connect timeout unless one is named,
    and -T unless it is there: a flag left wanting a value takes the provider's as its value."""
    flags = list(ssh_opts)
    if "ConnectTimeout" not in "".join(flags):
        flags.append("-o ConnectTimeout=30")
    if "-T" not in flags:
        flags.append("-T")
    return flags


def host_key_checking(ssh_opts: list[str]) -> HostKeyChecking:
    """Read docker:sshOpts as ssh reads the provider's flags; raise SshOptionsError where ssh would refuse them."""
    argv = provider_flags(ssh_opts)
    options: dict[str, tuple[str, list[str]]] = {}
    positions: dict[str, Optional[frozenset[int]]] = {}
    index = 0
    while index < len(argv):
        start, element = index, argv[index]
        index += 1
        if element == "--" or not element.startswith("-") or element == "-":
            raise SshOptionsError(f"{element!r} is not an ssh option: the provider puts the user, port and host "
                                  "after these, so only options (-o Keyword=value, -i key, ...) belong here")
        position = 1
        while position < len(element):
            letter = element[position]
            position += 1
            if letter in _WITH_ARGUMENT:
                if position < len(element):
                    value = element[position:]
                elif index < len(ssh_opts):
                    value, index = argv[index], index + 1
                else:  # ssh would take the provider's next flag as its value
                    raise SshOptionsError(f"-{letter} needs a value after it")
                if letter == "o":
                    keyword, words = _config_option(value)
                    if keyword == "stricthostkeychecking" and _strict(words) is None:  # ssh parses every value
                        raise SshOptionsError(f"-o {value!r}: StrictHostKeyChecking takes yes, no, ask, accept-new or off")
                    options.setdefault(keyword, (value, words))  # and keeps a keyword's first
                    held = positions.get(keyword, frozenset())
                    alone = position == 2  # `-o` or `-oValue`, not a cluster such as -vo
                    positions[keyword] = held | set(range(start, index)) if alone and held is not None else None
                break
            if letter not in _FLAGS:
                raise SshOptionsError(f"ssh has no option -{letter}")
    strict = _strict(options["stricthostkeychecking"][1]) if "stricthostkeychecking" in options else None
    known_hosts = tuple(options["userknownhostsfile"][1]) if "userknownhostsfile" in options else None
    return HostKeyChecking(strict=strict, known_hosts=known_hosts,
                           first={keyword: text for keyword, (text, _) in options.items()}, positions=positions)
