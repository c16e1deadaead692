"""docker.Secret and docker.ServiceConfig (kreuzwerker resource_docker_secret.go, _config.go): every input
ForceNew, no update; Swarm refuses to delete one a service still uses. Read sets only the name (a secret's
data never leaves the engine; a config's data is read back in the form it was given)."""

from __future__ import annotations

import base64
from typing import Optional

from carecircle.offline import DeclaredResource

from ..client import Context
from ..errors import UnmappedInputError
from ..mapping import Schema, to
from ..records import Live
from ..values import base64_data, labels, raw_to_base64, string
from .base import Kind, inspect_or_none

SECRET_FIELDS = {
    "name": to("Name", string),
    "data": to("Data", base64_data),
    "labels": to("Labels", labels),
}
CONFIG_FIELDS = {
    "name": to("Name", string),
    "data": to("Data", base64_data),
    "dataRaw": to("Data", raw_to_base64),
    "labels": to("Labels", labels),
}


class Secret(Kind):
    type = "docker:index/secret:Secret"
    schema = Schema(fields=SECRET_FIELDS, force_new=frozenset(SECRET_FIELDS), unordered=frozenset({"labels"}))
    endpoint = "secrets"

    def create(self, ctx: Context, live: Live, planned: dict) -> None:
        body, _ = self.body(live, planned)
        live.id = ctx.call(live, "POST", f"/{self.endpoint}/create", body=body, what=f"create {self.endpoint[:-1]}")["ID"]

    def read(self, ctx: Context, live: Live) -> Optional[dict]:
        found = inspect_or_none(ctx, live, f"/{self.endpoint}/{{0}}", f"inspect {self.endpoint[:-1]}")
        return None if found is None else {"name": found["Spec"]["Name"]}

    def delete(self, ctx: Context, live: Live) -> None:
        ctx.call(live, "DELETE", f"/{self.endpoint}/{{0}}", live.id or "", what=f"remove {self.endpoint[:-1]}")


class ServiceConfig(Secret):
    type = "docker:index/serviceConfig:ServiceConfig"
    schema = Schema(fields=CONFIG_FIELDS, force_new=frozenset(CONFIG_FIELDS), unordered=frozenset({"labels"}))
    endpoint = "configs"

    def validate(self, resource: DeclaredResource) -> None:
        super().validate(resource)
        if ("data" in resource.inputs) == ("dataRaw" in resource.inputs):
            raise UnmappedInputError(resource.name, resource.type, "data",
                                     "exactly one of data and dataRaw must be set (the provider's schema)")

    def read(self, ctx: Context, live: Live) -> Optional[dict]:
        found = inspect_or_none(ctx, live, "/configs/{0}", "inspect config")
        if found is None:
            return None
        data = base64.b64decode(found["Spec"].get("Data") or "")
        # resourceDockerConfigRead: data_raw when that is what the inputs used, else base64
        if "dataRaw" in live.state:
            return {"name": found["Spec"]["Name"], "dataRaw": data.decode()}
        return {"name": found["Spec"]["Name"], "data": base64.b64encode(data).decode()}
