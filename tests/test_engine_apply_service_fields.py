"""The applier against a real single-node Swarm: every mapped input of a service lands in the spec the
engine stores, and reaches the task containers."""

from __future__ import annotations

import base64
import time

import pulumi_docker as dk

from engine_apply import SERVICE
from real_engine import IMAGE, NS, b64, covers, evaluate, exec_out, overlay, task_containers

# ---------------------------------------------------------------------------------------------
# Field by field: services
# ---------------------------------------------------------------------------------------------

KITCHEN_PATHS = (
    "name", "labels", "mode.replicated.replicas",
    "taskSpec.containerSpec.image", "taskSpec.containerSpec.labels", "taskSpec.containerSpec.commands",
    "taskSpec.containerSpec.args", "taskSpec.containerSpec.hostname", "taskSpec.containerSpec.env",
    "taskSpec.containerSpec.dir", "taskSpec.containerSpec.user", "taskSpec.containerSpec.groups",
    "taskSpec.containerSpec.readOnly", "taskSpec.containerSpec.mounts[].type", "taskSpec.containerSpec.mounts[].target",
    "taskSpec.containerSpec.mounts[].source", "taskSpec.containerSpec.mounts[].readOnly",
    "taskSpec.containerSpec.mounts[].bindOptions.propagation", "taskSpec.containerSpec.mounts[].volumeOptions.noCopy",
    "taskSpec.containerSpec.mounts[].volumeOptions.labels", "taskSpec.containerSpec.mounts[].volumeOptions.driverName",
    "taskSpec.containerSpec.mounts[].volumeOptions.driverOptions", "taskSpec.containerSpec.mounts[].tmpfsOptions.sizeBytes",
    "taskSpec.containerSpec.mounts[].tmpfsOptions.mode", "taskSpec.containerSpec.stopSignal",
    "taskSpec.containerSpec.stopGracePeriod", "taskSpec.containerSpec.healthcheck.tests",
    "taskSpec.containerSpec.healthcheck.interval", "taskSpec.containerSpec.healthcheck.timeout",
    "taskSpec.containerSpec.healthcheck.startPeriod", "taskSpec.containerSpec.healthcheck.retries",
    "taskSpec.containerSpec.hosts", "taskSpec.containerSpec.dnsConfig.nameservers",
    "taskSpec.containerSpec.dnsConfig.searches", "taskSpec.containerSpec.dnsConfig.options",
    "taskSpec.containerSpec.secrets[].secretId", "taskSpec.containerSpec.secrets[].secretName",
    "taskSpec.containerSpec.secrets[].fileName", "taskSpec.containerSpec.secrets[].fileUid",
    "taskSpec.containerSpec.secrets[].fileGid", "taskSpec.containerSpec.secrets[].fileMode",
    "taskSpec.containerSpec.configs[].configId", "taskSpec.containerSpec.configs[].configName",
    "taskSpec.containerSpec.configs[].fileName", "taskSpec.containerSpec.configs[].fileUid",
    "taskSpec.containerSpec.configs[].fileGid", "taskSpec.containerSpec.configs[].fileMode",
    "taskSpec.containerSpec.isolation", "taskSpec.containerSpec.sysctl", "taskSpec.containerSpec.capAdds",
    "taskSpec.containerSpec.capDrops", "taskSpec.containerSpec.init",
    "taskSpec.resources.limits.nanoCpus", "taskSpec.resources.limits.memoryBytes",
    "taskSpec.resources.reservation.nanoCpus", "taskSpec.resources.reservation.memoryBytes",
    "taskSpec.restartPolicy.condition", "taskSpec.restartPolicy.delay", "taskSpec.restartPolicy.maxAttempts",
    "taskSpec.restartPolicy.window", "taskSpec.placement.constraints", "taskSpec.placement.prefs",
    "taskSpec.placement.maxReplicas", "taskSpec.forceUpdate", "taskSpec.runtime",
    "taskSpec.networksAdvanceds[].id", "taskSpec.networksAdvanceds[].aliases", "taskSpec.networksAdvanceds[].driverOpts",
    "taskSpec.logDriver.name", "taskSpec.logDriver.options",
    "updateConfig.parallelism", "updateConfig.delay", "updateConfig.failureAction", "updateConfig.monitor",
    "updateConfig.maxFailureRatio", "updateConfig.order",
    "rollbackConfig.parallelism", "rollbackConfig.delay", "rollbackConfig.failureAction", "rollbackConfig.monitor",
    "rollbackConfig.maxFailureRatio", "rollbackConfig.order",
    "endpointSpec.mode", "convergeConfig.delay", "convergeConfig.timeout",
)


@covers(SERVICE, *KITCHEN_PATHS)
def test_service_fields_on_a_converged_service(engine, applier, uid):
    bind_dir = engine.root / f"bind-{uid}"
    bind_dir.mkdir()
    (bind_dir / "hello").write_text("from the host")
    ready = ["CMD", "test", "-f", "/tmp/ready"]

    def program():
        net = overlay(f"{uid}-net")
        secret = dk.Secret("sec", name=f"{uid}-sec", data=b64("top"))
        config = dk.ServiceConfig("cfg", name=f"{uid}-cfg", data=b64("conf"))
        cs = dk.ServiceTaskSpecContainerSpecArgs(
            image=IMAGE,
            labels=[dk.ServiceTaskSpecContainerSpecLabelArgs(label="c.label", value="cv")],
            commands=["sh", "-c"],
            args=['echo "$GREETING" > /tmp/greeting; touch /tmp/ready; exec sleep 3600'],
            hostname="kitchen-host",
            env={"GREETING": "hello", "WITH_EQUALS": "a=b"},
            dir="/tmp",
            user="1000",
            groups=["2000"],
            read_only=True,
            mounts=[
                dk.ServiceTaskSpecContainerSpecMountArgs(
                    type="tmpfs", target="/tmp",
                    tmpfs_options=dk.ServiceTaskSpecContainerSpecMountTmpfsOptionsArgs(size_bytes=8 * 1024 * 1024, mode=0o1777)),
                dk.ServiceTaskSpecContainerSpecMountArgs(
                    type="volume", target="/data", source=f"{uid}-data",
                    volume_options=dk.ServiceTaskSpecContainerSpecMountVolumeOptionsArgs(
                        no_copy=True, driver_name="local", driver_options={"type": "tmpfs", "device": "tmpfs"},
                        labels=[dk.ServiceTaskSpecContainerSpecMountVolumeOptionsLabelArgs(label="v.label", value="vv")])),
                dk.ServiceTaskSpecContainerSpecMountArgs(
                    type="bind", target="/host", source=str(bind_dir), read_only=True,
                    bind_options=dk.ServiceTaskSpecContainerSpecMountBindOptionsArgs(propagation="private")),
            ],
            stop_signal="SIGUSR1",
            stop_grace_period="3s",
            healthcheck=dk.ServiceTaskSpecContainerSpecHealthcheckArgs(tests=ready, interval="1s", timeout="2s",
                                                                       start_period="1s", retries=3),
            hosts=[dk.ServiceTaskSpecContainerSpecHostArgs(host="db.internal", ip="10.1.2.3")],
            dns_config=dk.ServiceTaskSpecContainerSpecDnsConfigArgs(nameservers=["10.0.0.2"], searches=["example.internal"],
                                                                    options=["ndots:2"]),
            secrets=[dk.ServiceTaskSpecContainerSpecSecretArgs(secret_id=secret.id, secret_name=secret.name, file_name="app",
                                                               file_uid="1000", file_gid="2000", file_mode=0o440)],
            configs=[dk.ServiceTaskSpecContainerSpecConfigArgs(config_id=config.id, config_name=config.name, file_name="/etc/c.conf",
                                                               file_uid="1000", file_gid="2000", file_mode=0o400)],
            isolation="default",
            sysctl={"net.core.somaxconn": "1024"},
            cap_adds=["NET_ADMIN"],
            cap_drops=["MKNOD"],
            init=True,
        )
        dk.Service(
            "kitchen",
            name=f"{uid}-kitchen",
            labels=[dk.ServiceLabelArgs(label="s.label", value="sv")],
            mode=dk.ServiceModeArgs(replicated=dk.ServiceModeReplicatedArgs(replicas=2)),
            task_spec=dk.ServiceTaskSpecArgs(
                container_spec=cs,
                resources=dk.ServiceTaskSpecResourcesArgs(
                    limits=dk.ServiceTaskSpecResourcesLimitsArgs(nano_cpus=500_000_000, memory_bytes=64 * 1024 * 1024),
                    reservation=dk.ServiceTaskSpecResourcesReservationArgs(nano_cpus=10_000_000, memory_bytes=4 * 1024 * 1024)),
                restart_policy=dk.ServiceTaskSpecRestartPolicyArgs(condition="on-failure", delay="1s", max_attempts=3, window="10s"),
                placement=dk.ServiceTaskSpecPlacementArgs(constraints=["node.role==manager"], prefs=["node.labels.zone"],
                                                          max_replicas=2),
                force_update=1,
                runtime="container",
                networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(id=net.id, aliases=["kitchen-alias"],
                                                                           driver_opts=["com.example.opt=1"])],
                log_driver=dk.ServiceTaskSpecLogDriverArgs(name="json-file", options={"max-size": "1m"}),
            ),
            update_config=dk.ServiceUpdateConfigArgs(parallelism=2, delay="2s", failure_action="rollback", monitor="3s",
                                                     max_failure_ratio="0.5", order="start-first"),
            rollback_config=dk.ServiceRollbackConfigArgs(parallelism=1, delay="1s", failure_action="continue", monitor="4s",
                                                         max_failure_ratio="0.25", order="stop-first"),
            endpoint_spec=dk.ServiceEndpointSpecArgs(mode="dnsrr"),
            converge_config=dk.ServiceConvergeConfigArgs(delay="300ms", timeout="90s"),
        )

    started = time.monotonic()
    applier.apply(evaluate(engine, program))
    service_id = applier.real_id("kitchen")
    # convergeConfig: the apply returned only once both replicas ran, healthy
    tasks = task_containers(engine, service_id)
    assert len(tasks) == 2
    assert all(engine.api.inspect_container(t)["State"]["Health"]["Status"] == "healthy" for t in tasks)
    assert time.monotonic() - started > 0.3  # convergeConfig.delay was waited

    spec = engine.api.inspect_service(service_id)["Spec"]
    t, c = spec["TaskTemplate"], spec["TaskTemplate"]["ContainerSpec"]
    assert spec["Name"] == f"{uid}-kitchen"
    assert spec["Labels"] == {"s.label": "sv"}
    assert spec["Mode"] == {"Replicated": {"Replicas": 2}}
    assert c["Image"] == IMAGE
    assert c["Labels"] == {"c.label": "cv"}
    assert c["Command"] == ["sh", "-c"]
    assert c["Args"][0].startswith('echo "$GREETING"')
    assert c["Hostname"] == "kitchen-host"
    assert sorted(c["Env"]) == ["GREETING=hello", "WITH_EQUALS=a=b"]
    assert c["Dir"] == "/tmp"
    assert c["User"] == "1000"
    assert c["Groups"] == ["2000"]
    assert c["ReadOnly"] is True
    mounts = {m["Target"]: m for m in c["Mounts"]}
    assert mounts["/tmp"]["Type"] == "tmpfs"
    assert mounts["/tmp"]["TmpfsOptions"] == {"SizeBytes": 8 * 1024 * 1024, "Mode": 0o1777}
    assert (mounts["/data"]["Type"], mounts["/data"]["Source"]) == ("volume", f"{uid}-data")
    assert mounts["/data"]["VolumeOptions"] == {"NoCopy": True, "Labels": {"v.label": "vv"},
                                                "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs"}}}
    assert (mounts["/host"]["Source"], mounts["/host"]["ReadOnly"]) == (str(bind_dir), True)
    assert mounts["/host"]["BindOptions"] == {"Propagation": "private"}
    assert c["StopSignal"] == "SIGUSR1"
    assert c["StopGracePeriod"] == 3 * NS
    assert c["Healthcheck"] == {"Test": ready, "Interval": NS, "Timeout": 2 * NS, "StartPeriod": NS, "Retries": 3}
    assert c["Hosts"] == ["10.1.2.3 db.internal"]
    assert c["DNSConfig"] == {"Nameservers": ["10.0.0.2"], "Search": ["example.internal"], "Options": ["ndots:2"]}
    [secret_ref] = c["Secrets"]
    assert secret_ref["SecretID"] == applier.real_id("sec")  # mock id "sec-id" resolved
    assert secret_ref["SecretName"] == f"{uid}-sec"
    assert secret_ref["File"] == {"Name": "app", "UID": "1000", "GID": "2000", "Mode": 0o440}
    [config_ref] = c["Configs"]
    assert config_ref["ConfigID"] == applier.real_id("cfg")
    assert config_ref["ConfigName"] == f"{uid}-cfg"
    assert config_ref["File"] == {"Name": "/etc/c.conf", "UID": "1000", "GID": "2000", "Mode": 0o400}
    assert c["Isolation"] == "default"
    assert c["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert c["CapabilityAdd"] == ["NET_ADMIN"]
    assert c["CapabilityDrop"] == ["MKNOD"]
    assert c["Init"] is True
    assert t["Resources"] == {"Limits": {"NanoCPUs": 500_000_000, "MemoryBytes": 64 * 1024 * 1024},
                              "Reservations": {"NanoCPUs": 10_000_000, "MemoryBytes": 4 * 1024 * 1024}}
    assert t["RestartPolicy"] == {"Condition": "on-failure", "Delay": NS, "MaxAttempts": 3, "Window": 10 * NS}
    assert t["Placement"]["Constraints"] == ["node.role==manager"]
    assert t["Placement"]["Preferences"] == [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]
    assert t["Placement"]["MaxReplicas"] == 2
    assert t["ForceUpdate"] == 1
    assert t["Runtime"] == "container"
    [attachment] = t["Networks"]
    assert attachment["Target"] == applier.real_id(f"{uid}-net-net")  # mock id resolved to the network's id
    assert attachment["Aliases"] == ["kitchen-alias"]
    assert attachment["DriverOpts"] == {"com.example.opt": "1"}
    assert t["LogDriver"] == {"Name": "json-file", "Options": {"max-size": "1m"}}
    assert spec["UpdateConfig"] == {"Parallelism": 2, "Delay": 2 * NS, "FailureAction": "rollback", "Monitor": 3 * NS,
                                    "MaxFailureRatio": 0.5, "Order": "start-first"}
    assert spec["RollbackConfig"] == {"Parallelism": 1, "Delay": NS, "FailureAction": "continue", "Monitor": 4 * NS,
                                      "MaxFailureRatio": 0.25, "Order": "stop-first"}
    assert spec["EndpointSpec"]["Mode"] == "dnsrr"

    # ... and what a task container got from it
    task = tasks[0]
    inspected = engine.api.inspect_container(task)
    assert inspected["Config"]["Hostname"] == "kitchen-host"
    assert inspected["Config"]["User"] == "1000"
    assert inspected["HostConfig"]["ReadonlyRootfs"] is True
    assert inspected["HostConfig"]["Init"] is True
    assert inspected["HostConfig"]["CapAdd"] == ["NET_ADMIN"] and inspected["HostConfig"]["CapDrop"] == ["MKNOD"]
    assert inspected["HostConfig"]["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert inspected["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert inspected["HostConfig"]["NanoCpus"] == 500_000_000
    assert inspected["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
    assert inspected["HostConfig"]["ExtraHosts"] == ["db.internal:10.1.2.3"]
    assert inspected["Config"]["StopSignal"] == "SIGUSR1"
    assert exec_out(engine, task, ["cat", "/tmp/greeting"]) == "hello\n"
    assert exec_out(engine, task, ["pwd"]) == "/tmp\n"
    assert "2000" in exec_out(engine, task, ["id", "-G"]).split()
    assert exec_out(engine, task, ["cat", "/run/secrets/app"], user="1000") == "top"
    assert exec_out(engine, task, ["cat", "/etc/c.conf"], user="1000") == "conf"
    assert exec_out(engine, task, ["cat", "/host/hello"]) == "from the host"
    assert inspected["HostConfig"]["Dns"] == ["10.0.0.2"]  # behind the embedded DNS of the overlay network
    resolv = exec_out(engine, task, ["cat", "/etc/resolv.conf"])
    assert "search example.internal" in resolv and "ndots:2" in resolv
    assert engine.api.inspect_volume(f"{uid}-data")["Labels"] == {"v.label": "vv"}


@covers(SERVICE, "mode.global", "taskSpec.containerSpec.privileges.credentialSpec.file",
        "taskSpec.containerSpec.privileges.credentialSpec.registry",
        "taskSpec.containerSpec.privileges.seLinuxContext.disable", "taskSpec.containerSpec.privileges.seLinuxContext.user",
        "taskSpec.containerSpec.privileges.seLinuxContext.role", "taskSpec.containerSpec.privileges.seLinuxContext.type",
        "taskSpec.containerSpec.privileges.seLinuxContext.level", "taskSpec.placement.platforms[].architecture",
        "taskSpec.placement.platforms[].os", "taskSpec.resources.reservation.genericResources.namedResourcesSpecs",
        "taskSpec.resources.reservation.genericResources.discreteResourcesSpecs", "taskSpec.networksAdvanceds[].name",
        "endpointSpec.ports[].name", "endpointSpec.ports[].protocol", "endpointSpec.ports[].targetPort",
        "endpointSpec.ports[].publishedPort", "endpointSpec.ports[].publishMode",
        "auth.serverAddress", "auth.username", "auth.password")
def test_service_fields_that_do_not_run_here(engine, applier, uid):
    """Fields whose tasks cannot run on this Linux single node (Windows credential specs, SELinux,
    generic resources no node offers): the spec must still carry them."""

    def program():
        net = overlay(f"{uid}-net")
        common = dict(image=IMAGE, commands=["sleep", "3600"])
        dk.Service("globe", name=f"{uid}-globe", mode=dk.ServiceModeArgs(global_=True),
                   task_spec=dk.ServiceTaskSpecArgs(
                       container_spec=dk.ServiceTaskSpecContainerSpecArgs(
                           **common,
                           privileges=dk.ServiceTaskSpecContainerSpecPrivilegesArgs(
                               se_linux_context=dk.ServiceTaskSpecContainerSpecPrivilegesSeLinuxContextArgs(
                                   disable=False, user="system_u", role="system_r", type="svirt_lxc_net_t", level="s0:c1"))),
                       placement=dk.ServiceTaskSpecPlacementArgs(
                           platforms=[dk.ServiceTaskSpecPlacementPlatformArgs(architecture="arm64", os="windows")]),
                       resources=dk.ServiceTaskSpecResourcesArgs(reservation=dk.ServiceTaskSpecResourcesReservationArgs(
                           generic_resources=dk.ServiceTaskSpecResourcesReservationGenericResourcesArgs(
                               named_resources_specs=["GPU=UUID1"], discrete_resources_specs=["SSD=3"]))),
                       networks_advanceds=[dk.ServiceTaskSpecNetworksAdvancedArgs(name=net.name)]),
                   endpoint_spec=dk.ServiceEndpointSpecArgs(mode="vip", ports=[
                       dk.ServiceEndpointSpecPortArgs(name="web", protocol="udp", target_port=8080, published_port=18080,
                                                      publish_mode="host")]),
                   auth=dk.ServiceAuthArgs(server_address="registry.example:5000", username="robot", password="pw"))
        dk.Service("cred", name=f"{uid}-cred",
                   task_spec=dk.ServiceTaskSpecArgs(container_spec=dk.ServiceTaskSpecContainerSpecArgs(
                       **common,
                       privileges=dk.ServiceTaskSpecContainerSpecPrivilegesArgs(
                           credential_spec=dk.ServiceTaskSpecContainerSpecPrivilegesCredentialSpecArgs(file="spec.json")))))
        dk.Service("credreg", name=f"{uid}-credreg",
                   task_spec=dk.ServiceTaskSpecArgs(container_spec=dk.ServiceTaskSpecContainerSpecArgs(
                       **common,
                       privileges=dk.ServiceTaskSpecContainerSpecPrivilegesArgs(
                           credential_spec=dk.ServiceTaskSpecContainerSpecPrivilegesCredentialSpecArgs(registry="HKLM-key")))))

    result = applier.apply(evaluate(engine, program))
    globe = engine.api.inspect_service(applier.real_id("globe"))["Spec"]
    assert globe["Mode"] == {"Global": {}}
    context = globe["TaskTemplate"]["ContainerSpec"]["Privileges"]["SELinuxContext"]
    assert context == {"Disable": False, "User": "system_u", "Role": "system_r", "Type": "svirt_lxc_net_t", "Level": "s0:c1"}
    assert globe["TaskTemplate"]["Placement"]["Platforms"] == [{"Architecture": "arm64", "OS": "windows"}]
    assert globe["TaskTemplate"]["Resources"]["Reservations"]["GenericResources"] == [
        {"NamedResourceSpec": {"Kind": "GPU", "Value": "UUID1"}}, {"DiscreteResourceSpec": {"Kind": "SSD", "Value": 3}}]
    # networksAdvanceds.name: the engine resolves a name to the network's id
    assert globe["TaskTemplate"]["Networks"][0]["Target"] == applier.real_id(f"{uid}-net-net")
    assert globe["EndpointSpec"] == {"Mode": "vip", "Ports": [
        {"Name": "web", "Protocol": "udp", "TargetPort": 8080, "PublishedPort": 18080, "PublishMode": "host"}]}
    # auth never reaches the spec: it is the X-Registry-Auth header of the create call
    [create] = [r for r in result.requests_to("POST", "/services/create") if r.body["Name"] == f"{uid}-globe"]
    header = create.headers["X-Registry-Auth"]
    assert base64.urlsafe_b64decode(header) == b'{"username":"robot","password":"pw","serveraddress":"registry.example:5000"}'
    cred = engine.api.inspect_service(applier.real_id("cred"))["Spec"]["TaskTemplate"]["ContainerSpec"]["Privileges"]
    assert cred["CredentialSpec"]["File"] == "spec.json"
    credreg = engine.api.inspect_service(applier.real_id("credreg"))["Spec"]["TaskTemplate"]["ContainerSpec"]["Privileges"]
    # the provider writes `registry` into CredentialSpec.File (createContainerSpec); the applier does the same
    assert credreg["CredentialSpec"]["File"] == "HKLM-key"


