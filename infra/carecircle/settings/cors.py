"""CORS origins as nginx's `map $http_origin` reads them: exact origins (hash keys) and anchored
patterns (PCRE regexes that the gateway matches against the Origin header every request sends).

A pattern may use only a small regex grammar that PCRE2 (nginx) and Python's `re` (these checks)
read alike, in which nginx's config parser changes nothing (it unescapes \\\\, \\", \\', \\t, \\r and \\n
inside quotes; none can occur here):

    literal   letters, digits, ':', '/', '-'
    escapes   \\. (a dot)  \\d (a digit)  \\- (a hyphen)
    any       .
    class     [a-z0-9.-], [^...] (letters, digits, '.', '-', ranges between them, \\.)
    group     ( ... ) or (?: ... ), alternatives with | inside a group only
    repeat    ?  *  +  after an atom, once

A group repeated by * or + may hold no repeat and no alternative (`(a+)+`, `(a|aa)*`): the Origin
header is the client's, and such a pattern makes a match take exponential time in PCRE's backtracking.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Optional

from publicsuffixlist import PublicSuffixList

SCHEMES = ("^https://", "^http://", "^https?://")
LITERAL = re.compile(r"[A-Za-z0-9:/-]")
CLASS_BODY = re.compile(r"\^?(?:[A-Za-z0-9](?:-[A-Za-z0-9])?|\\\.|[.-])+")
HOST_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# Browsers send an origin as scheme://host[:port], the port only when it is not the scheme's default.
EXACT_ORIGIN = re.compile(rf"(?P<scheme>https?)://(?P<host>(?=[a-z0-9.-]{{1,253}}(?::|$)){HOST_LABEL}(?:\.{HOST_LABEL})*)"
                          r"(?::(?P<port>[1-9][0-9]{0,4}))?")
DEFAULT_PORTS = {"http": 80, "https": 443}


@functools.cache
def public_suffixes() -> PublicSuffixList:
    """The Public Suffix List as the package ships it (ICANN and private sections): co.uk, github.io and
    the like are suffixes under which anyone registers a name, as .com is."""
    return PublicSuffixList()


class PatternError(ValueError):
    pass


@dataclass(frozen=True)
class Token:
    text: str
    literal: Optional[str] = None  # the one character it matches, when it matches exactly one
    repeated: bool = False  # followed by ? * or +
    repeats_inside: bool = False  # a group holding a repeat or alternatives


def _tokens(body: str) -> list[Token]:
    """The body's atoms, top level (groups are one token each); raises PatternError."""
    tokens: list[Token] = []
    i = 0
    while i < len(body):
        char = body[i]
        if LITERAL.fullmatch(char):
            token, i = Token(char, literal=char), i + 1
        elif char == "\\":
            escaped = body[i + 1:i + 2]
            if escaped not in (".", "d", "-"):
                raise PatternError(f"may hold only the escapes \\. \\d \\-, not \\{escaped}")
            token, i = Token(body[i:i + 2], literal=None if escaped == "d" else escaped), i + 2
        elif char == ".":
            token, i = Token(char), i + 1
        elif char == "[":
            end = body.find("]", i + 1)
            if end < 0 or not CLASS_BODY.fullmatch(body[i + 1:end]):
                raise PatternError("may hold only classes [...] of letters, digits, '.', '-' and ranges such as a-z")
            token, i = Token(body[i:end + 1]), end + 1
        elif char == "(":
            depth, end = 0, i
            while end < len(body):
                depth += {"(": 1, ")": -1}.get(body[end], 0)
                if body[end] == "\\":
                    end += 1
                elif depth == 0:
                    break
                end += 1
            if depth:
                raise PatternError("is not a valid regular expression: a group is not closed")
            inner = body[i + 1:end]
            inner = inner[2:] if inner.startswith("?:") else inner
            parts = [_tokens(alternative) for alternative in _split_alternatives(inner)]
            if not any(parts):
                raise PatternError("has an empty group")
            # What makes a repeat of this group ambiguous: a repeat or an alternative inside it.
            ambiguous = len(parts) > 1 or any(t.repeated or t.repeats_inside for part in parts for t in part)
            token, i = Token(body[i:end + 1], repeats_inside=ambiguous), end + 1
        elif char in ")|":
            raise PatternError("is not a valid regular expression: ')' closes no group" if char == ")" else
                               "has a top-level '|': ^a|b$ anchors neither side; group it: ~^https://(a|b)$")
        else:
            raise PatternError(f"may hold only letters, digits, ':', '/', '-', the escapes \\. \\d \\-, '.', classes [...], "
                               f"groups (...) and the repeats ? * +: not {char!r}")
        if body[i:i + 1] in ("?", "*", "+"):
            if token.repeats_inside and body[i] != "?":
                raise PatternError("repeats a group that repeats inside or has alternatives, like (a+)+ or (a|aa)*: matching a "
                                   "client's Origin could take exponential time")
            token = Token(token.text + body[i], repeated=True, repeats_inside=token.repeats_inside)
            i += 1
            if body[i:i + 1] in ("?", "*", "+"):
                raise PatternError("has a repeat after a repeat")
        tokens.append(token)
    return tokens


def _split_alternatives(inner: str) -> list[str]:
    parts, depth, start, i = [], 0, 0, 0
    while i < len(inner):
        char = inner[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            i = inner.find("]", i) + 1 or len(inner)
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "|" and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
        i += 1
    return [*parts, inner[start:]]


@dataclass(frozen=True)
class OriginPattern:
    scheme: str  # https, http or https?
    host: list[Token]  # what follows scheme://, up to the final $

    @property
    def allows_http(self) -> bool:
        return self.scheme != "https"

    def pinned_domain(self) -> Optional[str]:
        """The domain every origin it matches is in: its host when every character is literal, else a
        literal tail after an escaped dot that is a domain someone holds, not a public suffix
        (`...\\.carecircle\\.example$`). None when it matches hosts anyone could register (`.*`,
        `[a-z]+\\.example$`, `[a-z]+\\.co\\.uk$`, `[a-z]+\\.github\\.io$`)."""
        literals = []
        for token in reversed(self.host):
            if token.literal is None or token.repeated:
                break
            literals.append(token.literal)
        host = re.sub(r":[0-9]+$", "", "".join(reversed(literals))).lower()
        if len(literals) == len(self.host):
            return host or None
        if re.fullmatch(rf"(?:\.{HOST_LABEL}){{2,}}", host) and public_suffixes().privatesuffix(host[1:]) is not None:
            return host[1:]
        return None


def parse_pattern(regex: str) -> OriginPattern:
    """An anchored origin pattern (without nginx's leading ~); raises PatternError."""
    if len(_split_alternatives(regex)) > 1:
        raise PatternError("has a top-level '|': ^a|b$ anchors neither side; group it: ~^https://(a|b)$")
    scheme = next((s for s in sorted(SCHEMES, key=len, reverse=True) if regex.startswith(s)), None)
    if scheme is None or not regex.endswith("$") or regex.endswith("\\$"):
        raise PatternError("must be anchored: start with ~^https:// and end with $")
    body = regex[len(scheme):-1]
    if not body:
        raise PatternError("matches no host")
    return OriginPattern(scheme=scheme[1:-3], host=_tokens(body))
