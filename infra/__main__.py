"""Pulumi entry point. The CLI runs this file with infra/ first on sys.path."""

import pulumi

from carecircle.program import declare_stack
from carecircle.settings import ConfigError

try:
    declare_stack()
except ConfigError as error:
    # RunError: the CLI prints the message alone, without a Python traceback.
    raise pulumi.RunError(str(error)) from None
