"""etcd, the store Patroni elects its leader through; one member per machine that hosts it."""

from __future__ import annotations

from stroppy_domain.layout import MachineLayout, ServiceSlot
from stroppy_domain.plan import Container, HealthCheck, ServiceKind, ServicePort, StartStage
from stroppy_domain.services.common import ETCD_VOLUME, POSTGRES_USER_ACCOUNT, ServiceContext


def render_etcd(machine: MachineLayout, slot: ServiceSlot, context: ServiceContext) -> Container:
    """The etcd member of a machine; every member is named in the initial cluster, so they form it together."""
    client, peer = slot.ports["client"], slot.ports["peer"]
    ip = context.ips[machine.name]
    names = {name: f"etcd-{number}" for number, name in enumerate(context.etcd_members, start=1)}
    initial_cluster = ",".join(f"{names[name]}=http://{context.ips[name]}:{peer}" for name in context.etcd_members)
    return Container(
        kind=ServiceKind.ETCD,
        image=context.images.etcd,
        command=[
            "etcd",
            f"--name={names[machine.name]}",
            f"--data-dir={ETCD_VOLUME}/data",
            f"--listen-client-urls=http://0.0.0.0:{client}",
            f"--advertise-client-urls=http://{ip}:{client}",
            f"--listen-peer-urls=http://0.0.0.0:{peer}",
            f"--initial-advertise-peer-urls=http://{ip}:{peer}",
            f"--initial-cluster={initial_cluster}",
            "--initial-cluster-state=new",
            f"--initial-cluster-token=stroppy-{context.test.name}",
        ],
        user=POSTGRES_USER_ACCOUNT,
        ports=[ServicePort(name="etcd-client", number=client), ServicePort(name="etcd-peer", number=peer)],
        volumes=[ETCD_VOLUME],
        health_check=HealthCheck(command=["etcdctl", f"--endpoints=http://127.0.0.1:{client}", "endpoint", "health"]),
        start_stage=StartStage.DCS,
    )
