"""The engine's part for a stack's ACME certificate on the swarm: a Pulumi dynamic resource, which
tests/engine_apply.py does not apply. In `pulumi up`'s order: what the certificate depends on (the
gateway containers) first, then its provider (diff; create or update when due) with the declared
inputs (DOCKER_HOST of each edge pointed at that node, as for every declared value), then everything
that carries its outputs (the gateways' configuration), from an evaluation that has them."""

from __future__ import annotations

from typing import Any, Optional

from carecircle.acme import AcmeCertificateProvider
from carecircle.components.certificate import ACME_CERTIFICATE_TYPE
from carecircle.offline import Evaluation

from .stack import DeployedStack, _replace_hosts


def _without(evaluation: Evaluation, urns: set[str]) -> Evaluation:
    return Evaluation(evaluation.stack, [r for r in evaluation.resources if r.urn not in urns], evaluation.outputs,
                      evaluation.secret_outputs, evaluation.secret_values)


def apply_with_certificate(stack: DeployedStack, **changes: Any) -> Optional[dict]:
    """Apply the stack with these config changes; returns the certificate's outputs when it was
    created or renewed, None when its provider's diff said nothing to do."""
    stack.config.update({(k if ":" in k else f"carecircle:{k}"): v for k, v in changes.items()})
    evaluation = stack.evaluate()
    (certificate,) = evaluation.of_type(ACME_CERTIFICATE_TYPE)
    inputs = _replace_hosts({k: v for k, v in certificate.inputs.items() if k != "__provider"}, stack.hosts())
    provider, current = AcmeCertificateProvider(), stack.resource_outputs.get(certificate.name)
    if current is not None and not provider.diff(certificate.name, current, inputs).changes:
        stack.apply(_without(evaluation, {certificate.urn}))
        return None
    carriers = {r.urn for r in evaluation.resources if certificate.urn in r.dependencies}
    stack.apply(_without(evaluation, {certificate.urn, *carriers}))
    outputs = (provider.create(inputs) if current is None else provider.update(certificate.name, current, inputs)).outs
    stack.resource_outputs[certificate.name] = outputs
    stack.apply(_without(stack.evaluate(), {certificate.urn}))
    return outputs
