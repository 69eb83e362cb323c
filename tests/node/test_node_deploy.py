"""`bft testnet` beyond one machine: hosts per validator, the listen host, and the Compose file and
Kubernetes manifest it writes (`bft.node.testnet`, `bft.node.deploy`), plus the image's health check.
The namespaces test (`tests/cluster/test_cluster_netns.py`) runs such a testnet for real."""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bft.core.safety_store import DurableFileStore
from bft.node.config import load_genesis
from bft.node.deploy import compose_document, kubernetes_documents, write_deployment
from bft.node.errors import ConfigError
from bft.node.testnet import parse_hosts, write_testnet
from bft.node.testnet import testnet_addresses as addresses_of

ROOT = Path(__file__).resolve().parents[2]
HEALTHCHECK = ROOT / "docker" / "healthcheck.py"


def _bft(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bft", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def _listen(home: Path) -> tuple[str, str]:
    config = tomllib.loads((home / "config.toml").read_text())
    return config["p2p"]["listen"], config["api"]["listen"]


# Hosts.


def test_hosts_are_read_from_a_list_or_a_file(tmp_path: Path) -> None:
    assert parse_hosts("10.0.0.1, 10.0.0.2,node-c,[fd00::4]", 4) == [
        "10.0.0.1",
        "10.0.0.2",
        "node-c",
        "fd00::4",
    ]
    listed = tmp_path / "hosts"
    listed.write_text("# the consortium\n10.1.0.1\n\n10.1.0.2  # bank B\n10.1.0.3\n10.1.0.4\n")
    assert parse_hosts(f"@{listed}", None) == ["10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4"]


@pytest.mark.parametrize(
    ("text", "nodes", "says"),
    [
        ("10.0.0.1,10.0.0.2,10.0.0.3", 4, "3 hosts for 4 nodes"),
        ("10.0.0.1:26600,10.0.0.2", None, "no ports here"),
        ("a b,c", None, "not a host"),
        ("a/b", None, "not a host"),
        (" , ,", None, "no host given"),
        ("@/nonexistent/hosts", None, "cannot read"),
    ],
)
def test_bad_hosts_are_refused_saying_why(text: str, nodes: int | None, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_hosts(text, nodes)


def test_ports_follow_each_nodes_rank_on_its_host() -> None:
    # A host per node: every node on the base port and the next, as across machines.
    assert addresses_of(["10.0.0.1", "10.0.0.2"], 26600) == [
        ("10.0.0.1:26600", "10.0.0.1:26601"),
        ("10.0.0.2:26600", "10.0.0.2:26601"),
    ]
    # Two on one host: the second gets the next pair; one host for all is the local layout.
    assert addresses_of(["a", "b", "a", "fd00::1"], 26600) == [
        ("a:26600", "a:26601"),
        ("b:26600", "b:26601"),
        ("a:26602", "a:26603"),
        ("[fd00::1]:26600", "[fd00::1]:26601"),
    ]
    local = addresses_of(["127.0.0.1"] * 3, 30000)
    assert local == [(f"127.0.0.1:{30000 + 2 * i}", f"127.0.0.1:{30001 + 2 * i}") for i in range(3)]
    with pytest.raises(ConfigError, match="no room"):
        addresses_of(["h"] * 3, 65532)


def test_each_node_listens_on_its_host_and_the_genesis_names_it(tmp_path: Path) -> None:
    hosts = ["10.9.0.1", "10.9.0.2", "10.9.0.3", "10.9.0.4"]
    homes = write_testnet(4, tmp_path / "net", 26600, hosts=hosts)
    genesis = load_genesis(tmp_path / "net" / "genesis.json")
    for i, home in enumerate(homes):
        assert _listen(home) == (f"{hosts[i]}:26600", f"{hosts[i]}:26601")
        assert (genesis.validators[i].p2p, genesis.validators[i].api) == _listen(home)


def test_a_listen_host_changes_where_nodes_listen_not_where_peers_dial(tmp_path: Path) -> None:
    homes = write_testnet(4, tmp_path / "net", 26600, hosts=["n0", "n1", "n2", "n3"], listen_host="0.0.0.0")
    genesis = load_genesis(tmp_path / "net" / "genesis.json")
    for i, home in enumerate(homes):
        assert _listen(home) == ("0.0.0.0:26600", "0.0.0.0:26601")
        assert genesis.validators[i].p2p == f"n{i}:26600"


def test_the_cli_takes_hosts_and_counts_nodes_from_them(tmp_path: Path) -> None:
    done = _bft("testnet", "--hosts", "10.7.0.1,10.7.0.2,10.7.0.3,10.7.0.4", "--out", str(tmp_path / "a"))
    assert done.returncode == 0, done.stderr
    assert len(load_genesis(tmp_path / "a" / "genesis.json").validators) == 4
    wrong = _bft("testnet", "--nodes", "4", "--hosts", "10.7.0.1,10.7.0.2", "--out", str(tmp_path / "b"))
    assert wrong.returncode == 2 and "2 hosts for 4 nodes" in wrong.stderr
    assert not (tmp_path / "b").exists()
    both = _bft("testnet", "--nodes", "4", "--compose", "--kubernetes", "--out", str(tmp_path / "c"))
    assert both.returncode == 2 and "choose one" in both.stderr
    neither = _bft("testnet", "--out", str(tmp_path / "d"))
    assert neither.returncode == 2 and "--nodes" in neither.stderr


# Compose.


def test_the_compose_file_runs_one_service_per_node_reachable_from_the_host(tmp_path: Path) -> None:
    out = tmp_path / "net"
    done = _bft("testnet", "--nodes", "4", "--out", str(out), "--compose")
    assert done.returncode == 0, done.stderr
    document = yaml.safe_load((out / "compose.yaml").read_text())
    assert document == compose_document(out)
    services = document["services"]
    assert sorted(services) == [f"node{i}" for i in range(4)]
    genesis = load_genesis(out / "genesis.json")
    published = set()
    for i in range(4):
        service = services[f"node{i}"]
        assert service["hostname"] == f"node{i}"
        assert genesis.validators[i].p2p == f"node{i}:26600"
        assert _listen(out / f"node{i}") == ("0.0.0.0:26600", "0.0.0.0:26601")
        assert service["volumes"] == [f"./node{i}:/data"]
        assert service["command"] == ["node", "--home", "/data"]
        assert service["user"] == f"{os.getuid()}:{os.getgid()}"
        (mapping,) = service["ports"]
        host_ip, host_port, container_port = mapping.split(":")
        assert host_ip == "127.0.0.1" and container_port == "26601"
        published.add(int(host_port))
    assert published == {26601 + 2 * i for i in range(4)}


# Kubernetes.


def test_the_kubernetes_manifest_holds_every_home_and_one_pod_per_node(tmp_path: Path) -> None:
    out = tmp_path / "net"
    done = _bft("testnet", "--nodes", "4", "--out", str(out), "--kubernetes")
    assert done.returncode == 0, done.stderr
    secret, service, statefulset = yaml.safe_load_all((out / "kubernetes.yaml").read_text())
    assert [secret, service, statefulset] == kubernetes_documents(out)
    assert "&id" not in (out / "kubernetes.yaml").read_text()  # no YAML anchors
    files = {name: base64.b64decode(value) for name, value in secret["data"].items()}
    assert files["genesis.json"] == (out / "genesis.json").read_bytes()
    for i in range(4):
        home = out / f"node{i}"
        assert files[f"node{i}-config.toml"] == (home / "config.toml").read_bytes()
        assert files[f"node{i}-node_key"] == (home / "node_key").read_bytes()
        assert files[f"node{i}-safety_state.cbor"] == (home / "data" / DurableFileStore.RECORD).read_bytes()
        assert load_genesis(out / "genesis.json").validators[i].p2p == f"bft-{i}.bft:26600"
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    spec = statefulset["spec"]
    assert spec["replicas"] == 4 and spec["serviceName"] == "bft"
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    # Alive is not healthy: a network without its quorum must not have every pod restarted.
    assert "tcpSocket" in container["livenessProbe"]


def test_the_pods_init_script_copies_its_own_home_once(tmp_path: Path) -> None:
    if shutil.which("sh") is None:
        pytest.skip("no sh")
    out = tmp_path / "net"
    write_testnet(4, out, 26600, hosts=[f"bft-{i}.bft" for i in range(4)], listen_host="0.0.0.0")
    secret, _, statefulset = kubernetes_documents(out)
    (init,) = statefulset["spec"]["template"]["spec"]["initContainers"]
    homes, data = tmp_path / "homes", tmp_path / "data"
    homes.mkdir()
    data.mkdir()
    for name, value in secret["data"].items():
        (homes / name).write_bytes(base64.b64decode(value))
    script = init["command"][2]
    assert "D=/data H=/homes;" in script
    script = script.replace("D=/data H=/homes;", f"D={data} H={homes};")
    env = {**os.environ, "HOSTNAME": "bft-2"}
    subprocess.run(["sh", "-c", script], env=env, check=True, timeout=10)
    assert (data / "config.toml").read_bytes() == (out / "node2" / "config.toml").read_bytes()
    assert (data / "node_key").read_bytes() == (out / "node2" / "node_key").read_bytes()
    assert (data / "node_key").stat().st_mode & 0o777 == 0o600
    assert (data / "data" / DurableFileStore.RECORD).exists()
    # A volume that holds a config is a node that ran: its files (its safety record) stay.
    (data / "data" / DurableFileStore.RECORD).write_bytes(b"the record of a node that voted")
    subprocess.run(["sh", "-c", script], env={**env, "HOSTNAME": "bft-3"}, check=True, timeout=10)
    assert (data / "data" / DurableFileStore.RECORD).read_bytes() == b"the record of a node that voted"
    assert (data / "config.toml").read_bytes() == (out / "node2" / "config.toml").read_bytes()


def test_a_manifest_needs_the_same_ports_on_every_node(tmp_path: Path) -> None:
    write_testnet(4, tmp_path / "net", 26600)  # one host: ports differ per node
    with pytest.raises(ConfigError, match="same ports"):
        write_deployment("kubernetes", tmp_path / "net")


# The image's health check.


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/health" else 404
        body = json.dumps({"healthy": code == 200}).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


def _check_health(home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BFT_HOME": str(home)}
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK)], env=env, capture_output=True, text=True, timeout=20
    )


def test_the_health_check_asks_the_nodes_own_api(
    tmp_path: Path, health_server: http.server.HTTPServer
) -> None:
    port = health_server.server_address[1]
    (tmp_path / "config.toml").write_text(f'[api]\nlisten = "0.0.0.0:{port}"\n')
    assert _check_health(tmp_path).returncode == 0
    _Health.status = 503
    try:
        failed = _check_health(tmp_path)
    finally:
        _Health.status = 200
    assert failed.returncode == 1 and "unhealthy" in failed.stderr
    assert _check_health(tmp_path / "nowhere").returncode == 1
