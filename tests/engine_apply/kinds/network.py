"""docker.Network (kreuzwerker resource_docker_network.go, _funcs.go): every input ForceNew, no update.
Read sets name, labels, driver, internal, attachable, ingress, ipv6, ipam driver/options/config, and the
options the engine reports (an overlay's include the VXLAN id it chose)."""

from __future__ import annotations

import time
from typing import Optional

from ..client import Context
from ..errors import EngineError
from ..mapping import Schema, each, to
from ..records import Live
from ..values import boolean, label_set, labels, string, string_map
from .base import Kind, inspect_or_none

IPAM_CONFIG_FIELDS = {
    "subnet": to("Subnet", string),
    "ipRange": to("IPRange", string),
    "gateway": to("Gateway", string),
    "auxAddress": to("AuxiliaryAddresses", string_map),  # the JSON name of IPAMConfig.AuxAddress
}
READ_DELAY = 2.0  # networkReadRefreshDelay

FIELDS = {
    "name": to("Name", string),
    "driver": to("Driver", string),
    "options": to("Options", string_map),
    "internal": to("Internal", boolean),
    "attachable": to("Attachable", boolean),
    "ingress": to("Ingress", boolean),
    "ipv6": to("EnableIPv6", boolean),
    "ipamDriver": to("IPAM.Driver", string),
    "ipamOptions": to("IPAM.Options", string_map),
    "ipamConfigs": to("IPAM.Config", each(IPAM_CONFIG_FIELDS)),
    "labels": to("Labels", labels),
}


class Network(Kind):
    type = "docker:index/network:Network"
    schema = Schema(
        fields=FIELDS,
        defaults={"": {"ipamDriver": "default"}},
        force_new=frozenset(FIELDS),
        computed=frozenset({"driver", "options", "internal", "ipamConfigs", "scope"}),
        unordered=frozenset({"labels", "ipamConfigs"}),
    )

    def create(self, ctx: Context, live: Live, planned: dict) -> None:
        body, _ = self.body(live, planned)
        body = {**body, "CheckDuplicate": True}  # the Go client sets it for engines before API 1.44
        live.id = ctx.call(live, "POST", "/networks/create", body=body, what="create network")["Id"]

    read_delay = READ_DELAY

    def read(self, ctx: Context, live: Live) -> Optional[dict]:
        # resourceDockerNetworkReadRefreshFunc under a StateChangeConf (first look after read_delay): an
        # "overlay"-scoped network is read once the engine shows its options, up to 30 s.
        deadline = time.monotonic() + 30
        while True:
            network = inspect_or_none(ctx, live, "/networks/{0}", "inspect network")
            if network is None:
                return None
            if network.get("Scope") != "overlay" or network.get("Options"):
                break
            if time.monotonic() > deadline:
                raise EngineError(f"{live.type} {live.name!r}: network {live.id} never exposed its options")
            time.sleep(ctx.poll_interval)
        ipam = network.get("IPAM") or {}
        return {
            "name": network["Name"],
            "labels": label_set(network.get("Labels")),
            "driver": network.get("Driver", ""),
            "internal": bool(network.get("Internal")),
            "attachable": bool(network.get("Attachable")),
            "ingress": bool(network.get("Ingress")),
            "ipv6": bool(network.get("EnableIPv6")),
            "ipamDriver": ipam.get("Driver", ""),
            "ipamOptions": ipam.get("Options") or {},
            "scope": network.get("Scope", ""),
            "options": network.get("Options") or {},
            "ipamConfigs": [{k: v for k, v in (("subnet", c.get("Subnet")), ("ipRange", c.get("IPRange")),
                                               ("gateway", c.get("Gateway")), ("auxAddress", c.get("AuxiliaryAddresses")))
                             if v} for c in ipam.get("Config") or []],
        }

    def delete(self, ctx: Context, live: Live) -> None:
        """resourceDockerNetworkRemoveRefreshFunc under a StateChangeConf (Delay 2 s, MinTimeout 5 s, 30 s):
        gone, or removed once the engine accepts the remove. A swarm network whose tasks are still shutting
        down is accepted for removal but lingers for seconds: a network of the same name cannot be created
        again until it is gone."""
        time.sleep(READ_DELAY)
        deadline = time.monotonic() + 30
        while True:
            if inspect_or_none(ctx, live, "/networks/{0}", "inspect network") is None:
                return
            try:
                ctx.call(live, "DELETE", "/networks/{0}", live.id or "", what="remove network")
                return
            except EngineError as error:
                if "has active endpoints" not in error.explanation or time.monotonic() > deadline:
                    raise
            time.sleep(5)
