"""docker.Volume (kreuzwerker resource_docker_volume.go): name, labels, driver and driver options are
ForceNew; Read sets name, labels, driver, driver options and the mountpoint. (Only a cluster volume's
availability updates in place; the program declares none.)"""

from __future__ import annotations

from typing import Optional

from ..client import Context
from ..mapping import Schema, to
from ..records import Live
from ..values import label_set, labels, string, string_map
from .base import Kind, inspect_or_none, retry_removal

FIELDS = {
    "name": to("Name", string),
    "driver": to("Driver", string),
    "driverOpts": to("DriverOpts", string_map),
    "labels": to("Labels", labels),
}


class Volume(Kind):
    type = "docker:index/volume:Volume"
    schema = Schema(
        fields=FIELDS,
        force_new=frozenset(FIELDS),
        computed=frozenset({"name", "driver", "mountpoint"}),
        unordered=frozenset({"labels"}),
    )

    def create(self, ctx: Context, live: Live, planned: dict) -> None:
        body, _ = self.body(live, planned)
        live.id = ctx.call(live, "POST", "/volumes/create", body=body, what="create volume")["Name"]

    def read(self, ctx: Context, live: Live) -> Optional[dict]:
        volume = inspect_or_none(ctx, live, "/volumes/{0}", "inspect volume")
        if volume is None:
            return None
        return {"name": volume["Name"], "labels": label_set(volume.get("Labels")), "driver": volume.get("Driver", ""),
                "driverOpts": volume.get("Options") or {}, "mountpoint": volume.get("Mountpoint", "")}

    def delete(self, ctx: Context, live: Live) -> None:
        retry_removal(ctx, live, lambda: ctx.call(live, "DELETE", "/volumes/{0}", live.id or "", params={"force": True}),
                      "volume is in use")
