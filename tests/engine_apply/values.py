"""Values as the provider's Go code handles them: input converters (Pulumi input -> Engine API value,
each raising ValueError on what the provider rejects) and the formats it reads values back in."""

from __future__ import annotations

import base64
import binascii
import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

SKIP = object()  # a converter result meaning "the provider sends nothing for this value"


def anything(value: Any) -> Any:
    return value


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected a boolean, got {value!r}")
    return value


def integer(value: Any) -> int:
    # The engine receives numbers as floats (24.0).
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ValueError(f"expected an integer, got {value!r}")
    return int(value)


def string_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return [string(v) for v in value]


def string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a map of strings, got {value!r}")
    return {string(k): string(v) for k, v in value.items()}


def labels(value: Any) -> dict[str, str]:
    """[{label, value}] (pulumi-docker's label sets) -> {label: value}."""
    if not isinstance(value, list):
        raise ValueError(f"expected a list of {{label, value}}, got {value!r}")
    out = {}
    for item in value:
        if not isinstance(item, dict) or set(item) != {"label", "value"}:
            raise ValueError(f"a label must have exactly the keys label and value, got {item!r}")
        out[string(item["label"])] = string(item["value"])
    return out


def label_set(mapping: dict[str, str] | None) -> list[dict[str, str]]:
    """{label: value} -> [{label, value}] (mapToLabelSet, as Read stores labels)."""
    return [{"label": k, "value": v} for k, v in sorted((mapping or {}).items())]


def kv_list_to_map(value: Any) -> dict[str, str]:
    """["k=v"] -> {k: v} (stringSetToMapStringString)."""
    return dict(item.split("=", 1) if "=" in item else (item, "") for item in string_list(value))


# -- Go durations ------------------------------------------------------------------------------

_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
                   "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds."""
    if text in ("0", "+0", "-0"):
        return 0
    sign, body = (-1, text[1:]) if text.startswith("-") else (1, text.lstrip("+"))
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    total, pos = Decimal(0), 0
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            raise ValueError(f"invalid duration {text!r}")
        total += Decimal(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(body):
        raise ValueError(f"invalid duration {text!r}")
    return sign * int(total)


def duration(value: Any) -> int:
    return parse_duration(string(value))


def lenient_duration(value: Any) -> int:
    """What the provider sends for a duration string it parses without checking the error
    (`parsed, _ := time.ParseDuration(...)`): an empty or invalid one becomes 0."""
    try:
        return parse_duration(string(value))
    except ValueError:
        return 0


def _fraction(value: int, precision: int) -> tuple[str, int]:
    """Go's fmtFrac: the fraction's digits without trailing zeros (no point when zero), and the rest."""
    digits, printed = [], False
    for _ in range(precision):
        digit = value % 10
        printed = printed or digit != 0
        if printed:
            digits.append(str(digit))
        value //= 10
    return ("." + "".join(reversed(digits)) if printed else ""), value


def go_duration_string(nanoseconds: int) -> str:
    """Go's time.Duration.String (src/time/time.go): 90s is "1m30s", 2m is "2m0s", 1h is "1h0m0s"."""
    if nanoseconds == 0:
        return "0s"
    magnitude = abs(nanoseconds)
    if magnitude < 1_000_000_000:
        unit, precision = ("ns", 0) if magnitude < 1_000 else ("µs", 3) if magnitude < 1_000_000 else ("ms", 6)
        fraction, whole = _fraction(magnitude, precision)
        text = f"{whole}{fraction}{unit}"
    else:
        fraction, seconds = _fraction(magnitude, 9)
        text = f"{seconds % 60}{fraction}s"
        minutes = seconds // 60
        if minutes:
            text = f"{minutes % 60}m{text}"
            if minutes // 60:
                text = f"{minutes // 60}h{text}"
    return ("-" if nanoseconds < 0 else "") + text


def short_duration(nanoseconds: int) -> str:
    """shortDur (kreuzwerker resource_docker_service_structures.go): Duration.String with a trailing
    "m0s" and then "h0m" cut, the form in which a service's durations are read back: 120s -> "2m"."""
    text = go_duration_string(nanoseconds)
    if text.endswith("m0s"):
        text = text[:-2]
    if text.endswith("h0m"):
        text = text[:-2]
    return text


# -- numbers ----------------------------------------------------------------------------------


def float_string(value: Any) -> float:
    try:
        return float(string(value))
    except ValueError:
        raise ValueError(f"expected a number as a string, got {value!r}") from None


def float_ratio_text(value: float) -> str:
    """strconv.FormatFloat(ratio, 'f', 1, 64): how update/rollback max_failure_ratio is read back."""
    return f"{value:.1f}"


def megabytes(value: Any) -> int:
    return integer(value) * 1024 * 1024


def cpus(value: Any) -> int:
    """docker's opts.ParseCPUs: "1.5" -> 1500000000 NanoCPUs."""
    try:
        nano = Decimal(string(value)) * 1_000_000_000
    except InvalidOperation:
        raise ValueError(f"invalid cpus {value!r}") from None
    if nano != nano.to_integral_value():
        raise ValueError(f"value is too precise: {value!r}")
    return int(nano)


def _rational_float_string(numerator: int, denominator: int, precision: int) -> str:
    """big.Rat.FloatString: `precision` digits after the point, the last rounded to nearest with
    halves away from zero."""
    scaled = Fraction(abs(numerator), denominator) * 10**precision
    quotient, remainder = divmod(scaled.numerator, scaled.denominator)
    if 2 * remainder >= scaled.denominator:
        quotient += 1
    whole, fraction = divmod(quotient, 10**precision)
    text = str(whole) + (f".{fraction:0{precision}d}" if precision else "")
    return ("-" if numerator < 0 and quotient else "") + text


def nano_decimal_string(nano: int) -> str:
    """nanoInt64ToDecimalString (kreuzwerker helpers.go), the form a container's cpus is read back in:
    FloatString(9), then FloatString(1) when that text holds exactly nine "0", else trailing zeros cut.
    1000000000 -> "1.0", 1500000000 -> "1.5", 250000000 -> "0.25", 10000000000 -> "10." (ten zeros)."""
    if nano == 0:
        return "0"
    text = _rational_float_string(nano, 1_000_000_000, 9)
    if text.count("0") == 9:
        return _rational_float_string(nano, 1_000_000_000, 1)
    return text.rstrip("0")


# -- data -------------------------------------------------------------------------------------


def base64_data(value: Any) -> str:
    """pulumi-docker's `data` is base64 (validated by the provider); the API takes base64 too."""
    try:
        return base64.b64encode(base64.b64decode(string(value), validate=True)).decode()
    except binascii.Error:
        raise ValueError("is not valid base64 (the provider validates it)") from None


def raw_to_base64(value: Any) -> str:
    return base64.b64encode(string(value).encode()).decode()


def global_mode(value: Any) -> Any:
    return {} if boolean(value) else SKIP


def hosts_list(value: Any) -> list[str]:
    """[{host, ip}] -> ["ip host"] (extraHostsSetToServiceExtraHosts)."""
    out = []
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, dict) or set(item) != {"host", "ip"}:
            raise ValueError(f"a host entry must have exactly the keys host and ip, got {item!r}")
        out.append(f"{string(item['ip'])} {string(item['host'])}")
    return out


def spread_prefs(value: Any) -> list[dict]:
    """Each string becomes a SpreadDescriptor as is (stringSetToPlacementPrefs): "spread=" is NOT
    stripped by the provider."""
    return [{"Spread": {"SpreadDescriptor": s}} for s in string_list(value)]


def named_resources(value: Any) -> list[dict]:
    out = []
    for item in string_list(value):
        kind, _, val = item.partition("=")
        out.append({"NamedResourceSpec": {"Kind": kind, "Value": val}})
    return out


def discrete_resources(value: Any) -> list[dict]:
    out = []
    for item in string_list(value):
        kind, _, val = item.partition("=")
        out.append({"DiscreteResourceSpec": {"Kind": kind, "Value": int(val)}})
    return out
