"""The engine's part for a stack's ACME certificate on the swarm: a Pulumi dynamic resource, which
tests/engine_apply/ does not apply. In `pulumi up`'s order: everything that does not wait for the
certificate first (the first edge's gateway container among it), then its provider (diff; create or
update when due) with the declared inputs (DOCKER_HOST of each edge pointed at that node, as for every
declared value), then everything that waits for it (the gateways' configuration, and the next edges'
gateways, replaced one after another), from an evaluation that has its outputs."""

from __future__ import annotations

from typing import Any, Optional

from carecircle.acme import AcmeCertificateProvider
from carecircle.components.certificate import ACME_CERTIFICATE_TYPE
from carecircle.offline import Evaluation

from .stack import DeployedStack, _replace_hosts


def _without(evaluation: Evaluation, urns: set[str]) -> Evaluation:
    return Evaluation(evaluation.stack, [r for r in evaluation.resources if r.urn not in urns], evaluation.outputs,
                      evaluation.secret_outputs, evaluation.secret_values)


def _downstream(evaluation: Evaluation, urn: str) -> set[str]:
    """What waits for `urn`, directly or through others: the gateways' configuration that carries the
    certificate, and the edges' gateways replaced after the first one serves it again."""
    waiting: set[str] = set()
    grew = True
    while grew:
        before = len(waiting)
        waiting |= {r.urn for r in evaluation.resources if {urn, *waiting} & set(r.dependencies)}
        grew = len(waiting) > before
    return waiting


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
    # `pulumi up` reaches the certificate once what it waits for is done; what waits for it (not yet
    # created, or still as it was) comes after. As `--target` of the rest, which leaves those as they are.
    waiting = _downstream(evaluation, certificate.urn)
    stack.apply(_without(evaluation, {certificate.urn}), target={r.urn for r in evaluation.resources} - {certificate.urn, *waiting})
    outputs = (provider.create(inputs) if current is None else provider.update(certificate.name, current, inputs)).outs
    stack.resource_outputs[certificate.name] = outputs
    stack.apply(_without(stack.evaluate(), {certificate.urn}))
    return outputs
