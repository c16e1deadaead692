"""Typed settings for one CareCircle stack: the only package that reads Pulumi config.

    types.py       reusable value types: text, numbers, names, paths, sizes, durations
    address_types.py  addresses, networks, images, URLs, the Docker host
    secret_types.py   secrets: how each kind is checked and faked offline
    base.py        how keys and cross-key rules are declared
    runtime.py     identity, Docker host, container defaults, edge network
    apps.py        api pools and workers
    data.py        postgres, redis, rabbitmq
    gateway.py     the nginx gateway
    monitoring.py  Prometheus, exporters, alert thresholds, tracing
    alerting.py    Alertmanager: receivers, routing, the dead man's switch, alert timing
    swarm.py       Docker Swarm: edge and monitoring nodes, spread, rolling updates
    model.py       the composed Settings and the rules across sections
    loading.py     reading the CLI's config, binding the environment, reporting every problem
    errors.py      the error message and its fix commands
"""

from .apps import COLORS, Color
from .errors import DOCKER_HOST_KEY, NAMESPACE, ConfigError, ConfigProblem, full_key
from .loading import SECRET_FIELDS, environment_of_stack, load_settings, parse_settings
from .model import Settings
from .types import STRICT_ENVIRONMENTS

__all__ = [
    "COLORS", "Color", "ConfigError", "ConfigProblem", "DOCKER_HOST_KEY", "NAMESPACE", "SECRET_FIELDS", "STRICT_ENVIRONMENTS",
    "Settings", "environment_of_stack", "full_key", "load_settings", "parse_settings",
]
