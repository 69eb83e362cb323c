"""Deployment files of a testnet beyond one machine: a Docker Compose file and a Kubernetes manifest.

Owns: `deployment_hosts` (the hosts each target names its nodes by), `DEPLOY_LISTEN_HOST`,
`compose_document` and `kubernetes_documents` (what `bft testnet --compose` and `--kubernetes`
write, as data), and `write_deployment`, which reads a testnet `bft.node.testnet` wrote and writes
the file next to its genesis.
May not: write keys or configs (the testnet does), start containers, or talk to a cluster.

The image is the repository's `Dockerfile` (`docker build -t bft-node .`; the Compose file takes
`$BFT_IMAGE` instead if set): `bft` as its entry point, a non-root user, the node home on the
volume `/data`, and a health check on the node's `/health`.

Compose: one service per node, named node<i> (its host name, which its peers dial), its home the
testnet's node<i> directory mounted at /data, run as the user who wrote the testnet (its files,
the private key among them, are that user's and mode 0600), and its API published on the host's
127.0.0.1 at the port a one-machine testnet would give it (node i: base port + 2i + 1), so that
`bft bench --target` and `curl` reach every node from the host.

Kubernetes: a StatefulSet `bft` of n pods (bft-0, bft-1, ...), its headless service `bft` (so
that bft-<i>.bft resolves to pod i from the first moment: `publishNotReadyAddresses`, as peers
must dial each other before any is healthy), and a secret with every node's home. Pods all run one
template, so each pod's init container copies its own files (config, key, genesis, first safety
record) from the secret onto its persistent volume, once: a volume that holds a config already is
a node that ran, and is never overwritten (its safety record is the one that counts). The secret
holds every validator's key, readable by whoever may read secrets in the namespace: for a real
network, give each validator its own namespace or a secret store, as an operator of CometBFT
would; the manifest is the shape, documented in the README.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any, Final

import yaml

from bft.core.safety_store import DurableFileStore
from bft.node.config import (
    CONFIG_FILE_NAME,
    GENESIS_FILE_NAME,
    KEY_FILE_NAME,
    load_genesis,
    load_node_config,
    parse_host_port,
)
from bft.node.errors import ConfigError
from bft.node.testnet import node_home

# Containers and pods listen on every interface; their peers dial them by name.
DEPLOY_LISTEN_HOST: Final = "0.0.0.0"
COMPOSE_FILE: Final = "compose.yaml"
KUBERNETES_FILE: Final = "kubernetes.yaml"
IMAGE: Final = "bft-node:latest"
# The image's user (the Dockerfile's `useradd --uid`), which the pods run as.
IMAGE_UID: Final = 10001
# The name of the StatefulSet, its service and its pods' prefix.
K8S_NAME: Final = "bft"
DATA_VOLUME_SIZE: Final = "10Gi"


def deployment_hosts(target: str, nodes: int) -> list[str]:
    """The host names node i has in `target` ("compose": node<i>; "kubernetes": bft-<i>.bft)."""
    if target == "compose":
        return [f"node{i}" for i in range(nodes)]
    if target == "kubernetes":
        return [f"{K8S_NAME}-{i}.{K8S_NAME}" for i in range(nodes)]
    raise ConfigError(f"no deployment target {target!r} (compose or kubernetes)")


def write_deployment(target: str, out: Path) -> Path:
    """Write `target`'s file for the testnet in `out` and return its path."""
    if target == "compose":
        path, text = out / COMPOSE_FILE, _dump([compose_document(out)])
    elif target == "kubernetes":
        path, text = out / KUBERNETES_FILE, _dump(kubernetes_documents(out))
    else:
        raise ConfigError(f"no deployment target {target!r} (compose or kubernetes)")
    header = f"# Written by `bft testnet --{target}`; the README's 'Beyond one machine' says how to run it.\n"
    path.write_text(header + text, encoding="utf-8")
    return path


class _Dumper(yaml.SafeDumper):
    """Writes shared values out in full: no YAML anchors in a file operators read and edit."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _dump(documents: list[dict[str, Any]]) -> str:
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def _ports(out: Path, index: int) -> tuple[int, int]:
    config = load_node_config(node_home(out, index))
    return parse_host_port(config.p2p_listen)[1], parse_host_port(config.api_listen)[1]


def _node_count(out: Path) -> int:
    return len(load_genesis(out / GENESIS_FILE_NAME).validators)


def compose_document(out: Path) -> dict[str, Any]:
    """The Compose file of the testnet in `out` (module header)."""
    services: dict[str, Any] = {}
    user = f"{os.getuid()}:{os.getgid()}" if hasattr(os, "getuid") else None
    for i in range(_node_count(out)):
        _, api_port = _ports(out, i)
        host_api_port = api_port + 2 * i
        service: dict[str, Any] = {
            "image": f"${{BFT_IMAGE:-{IMAGE}}}",
            "command": ["node", "--home", "/data"],
            "hostname": f"node{i}",
            "volumes": [f"./node{i}:/data"],
            "ports": [f"127.0.0.1:{host_api_port}:{api_port}"],
            "restart": "unless-stopped",
            "stop_grace_period": "30s",
        }
        if user is not None:
            service["user"] = user
        services[f"node{i}"] = service
    return {"services": services}


def kubernetes_documents(out: Path) -> list[dict[str, Any]]:
    """The secret, headless service and StatefulSet of the testnet in `out` (module header)."""
    n = _node_count(out)
    p2p_port, api_port = _ports(out, 0)
    for i in range(1, n):
        if _ports(out, i) != (p2p_port, api_port):
            raise ConfigError(
                f"node {i} listens on other ports than node 0: a StatefulSet runs one pod template, so "
                "every node must use the same ports (write the testnet with a host per node)"
            )
    files: dict[str, str] = {GENESIS_FILE_NAME: _b64(out / GENESIS_FILE_NAME)}
    for i in range(n):
        home = node_home(out, i)
        files[f"node{i}-{CONFIG_FILE_NAME}"] = _b64(home / CONFIG_FILE_NAME)
        files[f"node{i}-{KEY_FILE_NAME}"] = _b64(home / KEY_FILE_NAME)
        files[f"node{i}-{DurableFileStore.RECORD}"] = _b64(home / "data" / DurableFileStore.RECORD)
    labels = {"app": K8S_NAME}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{K8S_NAME}-homes", "labels": labels},
        "type": "Opaque",
        "data": files,
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": K8S_NAME, "labels": labels},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": labels,
            "ports": [{"name": "p2p", "port": p2p_port}, {"name": "api", "port": api_port}],
        },
    }
    # The pod's ordinal is the suffix of its name; its files are copied once (module header).
    copy = (
        "set -eu; D=/data H=/homes; i=${HOSTNAME##*-}; "
        f"if [ ! -f $D/{CONFIG_FILE_NAME} ]; then "
        "mkdir -p $D/data; "
        f"cp $H/node$i-{CONFIG_FILE_NAME} $D/{CONFIG_FILE_NAME}; "
        f"cp $H/node$i-{KEY_FILE_NAME} $D/{KEY_FILE_NAME}; "
        f"cp $H/{GENESIS_FILE_NAME} $D/{GENESIS_FILE_NAME}; "
        f"cp $H/node$i-{DurableFileStore.RECORD} $D/data/{DurableFileStore.RECORD}; "
        f"chmod 600 $D/{KEY_FILE_NAME}; chmod 700 $D $D/data; fi"
    )
    # Ready while healthy (`/health`: connected to a quorum, committing); alive while it answers
    # at all. Not alive-while-healthy: a network that lost its quorum would have every pod
    # restarted, over and over, and recover no sooner.
    ready = {"httpGet": {"path": "/health", "port": "api"}, "periodSeconds": 10, "failureThreshold": 3}
    alive = {"tcpSocket": {"port": "api"}, "periodSeconds": 10, "failureThreshold": 6}
    container = {
        "name": "node",
        "image": IMAGE,
        "args": ["node", "--home", "/data"],
        "ports": [{"name": "p2p", "containerPort": p2p_port}, {"name": "api", "containerPort": api_port}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "readinessProbe": ready,
        "livenessProbe": alive,
    }
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": K8S_NAME, "labels": labels},
        "spec": {
            "serviceName": K8S_NAME,
            "replicas": n,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": IMAGE_UID, "fsGroup": IMAGE_UID},
                    "terminationGracePeriodSeconds": 30,
                    "initContainers": [
                        {
                            "name": "home",
                            "image": IMAGE,
                            "command": ["sh", "-c", copy],
                            "volumeMounts": [
                                {"name": "data", "mountPath": "/data"},
                                {"name": "homes", "mountPath": "/homes", "readOnly": True},
                            ],
                        }
                    ],
                    "containers": [container],
                    "volumes": [{"name": "homes", "secret": {"secretName": f"{K8S_NAME}-homes"}}],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": DATA_VOLUME_SIZE}},
                    },
                }
            ],
        },
    }
    return [secret, service, statefulset]


def _b64(path: Path) -> str:
    try:
        return base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it for the deployment file: {exc}") from exc
