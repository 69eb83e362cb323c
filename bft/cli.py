"""The `bft` command.

Owns: argument parsing and the terminal presentation of each subcommand.
May not: hold protocol, simulation or behaviour logic; it composes them.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Sequence
from pathlib import Path

from bft.attack.command import add_command as add_attack_command
from bft.bench import add_command as add_bench_command
from bft.chaos.command import CONTROL_USAGE
from bft.chaos.command import add_command as add_chaos_command
from bft.cli_args import non_negative_float, non_negative_int, port, positive_int
from bft.cli_commit_chain import add_commit_chain_option
from bft.cli_ledger import add_commands as add_ledger_commands
from bft.cli_quorum_store import add_quorum_store_option
from bft.cli_reputation import add_leader_reputation_option
from bft.core.commit_rule import DEFAULT_COMMIT_CHAIN
from bft.core.types import max_faulty

# How many schedules `bft sim` runs unless told.
_SIM_SEEDS = 100


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bft", description="A Byzantine-fault-tolerant consensus node.")
    parser.add_argument("--version", action="version", version=f"bft {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_testnet(commands)
    _add_node(commands)
    _add_cluster(commands)
    _add_sim(commands)
    add_ledger_commands(commands)
    add_bench_command(commands)
    add_attack_command(commands)
    add_chaos_command(commands)
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        return _interrupted(args.command)
    except BaseExceptionGroup as group:
        # trio wraps a Ctrl-C that lands in a nursery's task; one made of Ctrl-Cs only is still one.
        _, rest = group.split(KeyboardInterrupt)
        if rest is not None:
            raise
        return _interrupted(args.command)
    return code


def package_version() -> str:
    """The installed package's version, else (running from a source tree) `bft.__version__`."""
    try:
        return importlib.metadata.version("bft-node")
    except importlib.metadata.PackageNotFoundError:
        import bft

        return bft.__version__


# A Ctrl-C that reached a command outside its own signal handling (before it installed it, after
# it removed it, or a second one while stopping) exits with the shell's code for SIGINT.
EXIT_INTERRUPTED = 130


def _interrupted(command: str) -> int:
    """One line instead of a traceback when Ctrl-C ends a command; the exit status."""
    print(f"bft {command}: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


def _add_testnet(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    testnet = commands.add_parser(
        "testnet",
        help="write the configuration, keys and genesis of an N-node network",
        description=(
            "Write DIR/node<i>/config.toml ([p2p] listen and [api] listen as host:port; node i uses "
            "ports P+2i and P+2i+1), a private key file per node (mode 0600) and the shared genesis "
            "(DIR/genesis.json, copied into each node directory)."
        ),
    )
    testnet.add_argument(
        "--nodes",
        type=positive_int,
        default=None,
        help="number of validators (default: one per host of --hosts)",
    )
    testnet.add_argument("--out", type=Path, required=True, help="output directory")
    testnet.add_argument(
        "--base-port", type=port, default=None, help="first port (default from configs/local-4.toml: 26600)"
    )
    testnet.add_argument(
        "--hosts",
        default=None,
        metavar="H0,H1,...|@FILE",
        help="the validators' hosts (addresses or names, IPv6 in brackets), one per node, or a file of "
        "them, one per line: node i listens on and is dialled at host i, every node on the base port and "
        "the next where each host is its own (default: all on 127.0.0.1, ports P+2i and P+2i+1)",
    )
    testnet.add_argument(
        "--listen-host",
        default=None,
        metavar="HOST",
        help="listen on this host instead of each node's own (0.0.0.0: every interface, as in a container "
        "that peers reach by its name); the genesis keeps the hosts peers dial",
    )
    testnet.add_argument(
        "--compose",
        action="store_true",
        help="also write DIR/compose.yaml, a Docker Compose file running the network (hosts default to "
        "the service names node0, node1, ... and the nodes listen on 0.0.0.0)",
    )
    testnet.add_argument(
        "--kubernetes",
        action="store_true",
        help="also write DIR/kubernetes.yaml: a StatefulSet, its headless service and a secret with the "
        "node homes (hosts default to the pods' names bft-0.bft, bft-1.bft, ...; nodes listen on 0.0.0.0)",
    )
    add_commit_chain_option(testnet)
    add_quorum_store_option(testnet)
    add_leader_reputation_option(testnet)
    testnet.add_argument(
        "--state-sync",
        action="store_true",
        help='write "state_sync": true in the genesis: blocks claim a state a snapshot can be checked '
        "against, every node writes snapshots ([storage] snapshot_interval), and a new or wiped node "
        "joins from one (bft node --state-sync) instead of replaying the chain",
    )
    testnet.set_defaults(run=_run_testnet)


def _run_testnet(args: argparse.Namespace) -> int:
    from bft.node.config import load_cluster_defaults
    from bft.node.deploy import DEPLOY_LISTEN_HOST, deployment_hosts, write_deployment
    from bft.node.errors import ConfigError, NodeError
    from bft.node.testnet import parse_hosts, write_testnet

    try:
        if args.compose and args.kubernetes:
            raise ConfigError("--compose and --kubernetes name their hosts differently: choose one")
        target = "compose" if args.compose else "kubernetes" if args.kubernetes else None
        hosts = None if args.hosts is None else parse_hosts(args.hosts, args.nodes)
        nodes = args.nodes if args.nodes is not None else None if hosts is None else len(hosts)
        if nodes is None:
            raise ConfigError("give --nodes N (or --hosts, one host per node)")
        if hosts is None and target is not None:
            hosts = deployment_hosts(target, nodes)
        listen_host = args.listen_host
        if listen_host is None and target is not None:
            listen_host = DEPLOY_LISTEN_HOST
        base_port = args.base_port if args.base_port is not None else load_cluster_defaults().base_port
        homes = write_testnet(
            nodes,
            args.out,
            base_port,
            hosts=hosts,
            listen_host=listen_host,
            commit_chain=args.commit_chain,
            quorum_store=args.quorum_store,
            leader_reputation=args.leader_reputation,
            state_sync=args.state_sync,
        )
        written = [] if target is None else [write_deployment(target, args.out)]
    except NodeError as e:
        print(f"bft testnet: {e}", file=sys.stderr)
        return 2
    for path in [*homes, *written]:
        print(f"wrote {path}")
    return 0


def _add_node(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from bft.adversary import BEHAVIOURS
    from bft.node.logs import LOG_LEVELS

    node = commands.add_parser(
        "node",
        help="run one node until SIGINT or SIGTERM",
        description="Run the node whose configuration is in DIR/config.toml until SIGINT or SIGTERM.",
    )
    node.add_argument("--home", type=Path, required=True, help="the node's directory (DIR/node<i>)")
    node.add_argument(
        "--byzantine", choices=sorted(BEHAVIOURS), default=None, help="run this Byzantine behaviour"
    )
    node.add_argument(
        "--log-level",
        choices=list(LOG_LEVELS),
        default="info",
        help="write log lines of this level and above (default info)",
    )
    node.add_argument(
        "--log-stdout",
        action="store_true",
        help="write the log lines to stdout as well as to the node's log file",
    )
    node.add_argument(
        "--state-sync",
        action="store_true",
        help="first join from the newest snapshot the other validators serve, if it is above this "
        'node\'s committed height (a new or wiped node; the genesis must say "state_sync")',
    )
    node.add_argument(
        "--sync-from",
        metavar="URL[,URL...]",
        default=None,
        help="with --state-sync: the nodes' APIs to join from, tried in this order (default: the "
        "other validators' API addresses in the genesis); nothing they send is trusted unverified",
    )
    node.set_defaults(run=_run_node)


def _run_node(args: argparse.Namespace) -> int:
    from bft.node import process
    from bft.node.errors import NodeError
    from bft.node.logs import LOG_LEVELS
    from crypto.errors import CryptoError

    try:
        return process.run_node(
            args.home,
            args.byzantine,
            log_level=LOG_LEVELS[args.log_level],
            log_stdout=args.log_stdout,
            state_sync=args.state_sync,
            sync_from=None if args.sync_from is None else [u for u in args.sync_from.split(",") if u],
        )
    except (NodeError, CryptoError) as e:
        print(f"bft node: {e}", file=sys.stderr)
        return 2


def _add_cluster(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from bft.adversary import BEHAVIOURS

    cluster = commands.add_parser(
        "cluster",
        help="set up and run a local cluster of node processes with a live view",
        description=(
            "Start N nodes as separate processes on 127.0.0.1 (keys and configuration are written to "
            "the data directory on first use), show each node's view, committed height, leader, "
            "commits per second and peers, and stop them all on Ctrl-C."
        ),
    )
    cluster.add_argument("--nodes", type=positive_int, default=None, help="number of nodes (default 4)")
    cluster.add_argument("--home", type=Path, default=None, help="data directory (default ~/.bft/cluster-N)")
    cluster.add_argument("--base-port", type=port, default=None, help="first port (default from configs/)")
    cluster.add_argument(
        "--byzantine",
        default="",
        help=(
            "comma-separated behaviours, I=NAME for node I or NAME for the last nodes, e.g. "
            f"2=equivocate,3=double-vote ({', '.join(sorted(BEHAVIOURS))})"
        ),
    )
    cluster.add_argument(
        "--chaos",
        action="store_true",
        help="route every p2p link through the fault relay and take `bft ctl` commands (a fresh "
        "cluster in --home, default chaos-runs/live-TIME); judged by the chaos checker on Ctrl-C",
    )
    cluster.add_argument(
        "--load",
        type=non_negative_float,
        default=20.0,
        help="with --chaos: client operations per second (default 20; 0 for none)",
    )
    add_commit_chain_option(
        cluster,
        more_help=f"default {DEFAULT_COMMIT_CHAIN}; a two-chain cluster's default data directory is "
        "~/.bft/cluster-N-two-chain, and a data directory keeps the rule it was set up with",
    )
    add_quorum_store_option(
        cluster,
        more_help="default off; such a cluster's default data directory is ~/.bft/cluster-N-quorum-store, "
        "and a data directory keeps what it was set up with",
    )
    add_leader_reputation_option(
        cluster,
        more_help="default off; such a cluster's default data directory is ~/.bft/cluster-N-reputation, "
        "and a data directory keeps what it was set up with",
    )
    cluster.set_defaults(run=_run_cluster)
    ctl = commands.add_parser(
        "ctl",
        help="perturb a running `bft cluster --chaos`: partition, heal, kill, restart, pause, delay...",
        description="Send one command to a running `bft cluster --chaos`. " + CONTROL_USAGE,
    )
    ctl.add_argument("--home", type=Path, required=True, help="the chaos cluster's directory")
    ctl.add_argument("words", nargs="+", help="the command, e.g. partition 0,1 2,3")
    ctl.set_defaults(run=_run_ctl)


def _run_cluster(args: argparse.Namespace) -> int:
    import trio
    from rich.console import Console

    from bft.adversary import BEHAVIOURS
    from bft.node.cluster import default_home, run_cluster
    from bft.node.config import load_cluster_defaults
    from bft.node.errors import NodeError

    defaults = load_cluster_defaults()
    nodes = args.nodes if args.nodes is not None else defaults.nodes
    base_port = args.base_port if args.base_port is not None else defaults.base_port
    byzantine = _byzantine_map(nodes, args.byzantine, sorted(BEHAVIOURS))
    if isinstance(byzantine, str):
        print(f"bft cluster: {byzantine}", file=sys.stderr)
        return 2
    if args.chaos:
        if args.commit_chain != DEFAULT_COMMIT_CHAIN:
            # The chaos testbed writes its scenario's testnet, which has no commit rule to choose.
            print("bft cluster: --chaos runs the three-chain rule only; drop --commit-chain", file=sys.stderr)
            return 2
        if args.quorum_store:
            # Nor has it a quorum store to switch on.
            print("bft cluster: --chaos runs without the quorum store; drop --quorum-store", file=sys.stderr)
            return 2
        if args.leader_reputation:
            # Nor a leader schedule to choose.
            print(
                "bft cluster: --chaos runs the fixed leader schedule; drop --leader-reputation",
                file=sys.stderr,
            )
            return 2
        return _run_chaos_cluster(args, nodes, byzantine)
    home = args.home
    if home is None:
        home = default_home(nodes, args.commit_chain, args.quorum_store, args.leader_reputation)
    try:
        code: int = trio.run(
            run_cluster,
            home,
            nodes,
            base_port,
            byzantine,
            Console(),
            args.commit_chain,
            args.quorum_store,
            args.leader_reputation,
        )
    except NodeError as e:
        # Setting up the data directory failed (it holds something else, a port range that
        # does not fit): before any node process started.
        print(f"bft cluster: {e}", file=sys.stderr)
        return 2
    return code


def _run_ctl(args: argparse.Namespace) -> int:
    import trio

    from bft.chaos.control import CONTROL_SOCKET, send_words

    path = args.home / CONTROL_SOCKET
    if not path.exists():
        print(f"bft ctl: no chaos cluster runs in {args.home} ({path} is missing)", file=sys.stderr)
        return 2
    try:
        ok, detail = trio.run(send_words, path, args.words)
    except (OSError, trio.TooSlowError, ValueError) as exc:
        print(f"bft ctl: {exc}", file=sys.stderr)
        return 2
    print(detail if ok else f"bft ctl: {detail}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 2


def _add_sim(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from bft.campaign import behaviour_names

    sim = commands.add_parser(
        "sim",
        help="run a seeded simulation campaign of the real core",
        description=(
            "Run n replicas of the real core in a deterministic simulator with message delays, drops, "
            "duplicates, partitions (by time and by view) that heal, a second asynchronous period "
            "after GST, crashes and restarts, pauses (a stopped process whose clock jumps), and "
            "Byzantine behaviours; check agreement, validity "
            "(proposer and certificates of every committed block), no double signing, safety-state "
            "monotonicity after every step, and liveness after the last fault. Exits 1 on any "
            "violation and prints the seed and the command that replays it."
        ),
    )
    sim.add_argument("--nodes", type=positive_int, default=4, help="number of validators (default 4)")
    sim.add_argument(
        "--byzantine",
        default="",
        help=f"comma-separated behaviours, at most f of them: {', '.join(behaviour_names())}",
    )
    # The campaign options default to None so that `--seed` can tell they were given.
    sim.add_argument(
        "--seeds", type=positive_int, default=None, help=f"how many schedules to run (default {_SIM_SEEDS})"
    )
    sim.add_argument(
        "--first-seed", type=non_negative_int, default=None, help="seed of the first schedule (default 0)"
    )
    sim.add_argument("--seed", type=non_negative_int, default=None, help="replay exactly this one seed")
    sim.add_argument(
        "--trace",
        action="store_true",
        help="with --seed: print the schedule (Byzantine nodes, settings, fault plan), every event "
        "with its time in ms, and the outcome",
    )
    sim.add_argument("--no-crashes", action="store_true", help="no crash/restart faults")
    sim.add_argument(
        "--short-timeouts",
        action="store_true",
        help="each seed draws a base view timeout of 20 to 50 ms, a batch delay of 0 to 5 ms and a "
        "delay bound after GST of a few ms (as on one machine), and more plans pause a node",
    )
    add_commit_chain_option(sim)
    sim.add_argument(
        "--quorum-store",
        action="store_true",
        help="the genesis disseminates batches apart from ordering: proposals carry proofs of "
        "availability (f+1 signed acknowledgements) instead of transactions",
    )
    add_leader_reputation_option(sim)
    sim.add_argument("--quiet", action="store_true", help="no live progress display")
    sim.add_argument(
        "--jobs",
        type=positive_int,
        default=None,
        metavar="N",
        help="run the seeds in N worker processes; results are the same for every N (default 1: "
        "in this process)",
    )
    sim.add_argument(
        "--state-sync",
        action="store_true",
        help='a genesis with "state_sync": claims name the ledger\'s state with the transaction set '
        "(the ledger's app hash version 2, the block store's transaction set)",
    )
    sim.add_argument(
        "--retain-blocks",
        type=positive_int,
        default=0,
        metavar="N",
        help="every node keeps only its latest N executed blocks, pruning after each step as a node "
        "with [storage] retain_blocks = N does (default: keep every block)",
    )
    sim.set_defaults(run=_run_sim, parser=sim)


def _check_sim_options(args: argparse.Namespace) -> None:
    """Options that would be silently ignored are a usage error (argparse's: exit 2)."""
    parser: argparse.ArgumentParser = args.parser
    if args.seed is None:
        if args.trace:
            parser.error(
                "--trace needs --seed N (it prints one schedule; a campaign prints the replay "
                "command of each failing seed, to run again with --trace)"
            )
        return
    for option, value in (("--seeds", args.seeds), ("--first-seed", args.first_seed), ("--jobs", args.jobs)):
        if value is not None:
            parser.error(f"--seed replays one schedule; {option} is for a campaign")


def _behaviour_list(nodes: int, text: str, allowed: list[str]) -> list[str] | str:
    """The comma-separated behaviours of `--byzantine`, or the reason they cannot run."""
    names = [b.strip() for b in text.split(",") if b.strip()]
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        return f"unknown behaviour(s) {', '.join(unknown)}; choose from {', '.join(allowed)}"
    f = max_faulty(nodes)
    if len(names) > f:
        # The bound every BFT protocol lives with: n >= 3f + 1 to tolerate f Byzantine validators.
        count = f"{len(names)} Byzantine behaviour{'s' if len(names) > 1 else ''}"
        need = "needs" if len(names) == 1 else "need"
        return (
            f"{count} {need} at least {3 * len(names) + 1} nodes (n >= 3f + 1); "
            f"{nodes} nodes tolerate f = {f}"
        )
    return names


def _byzantine_map(nodes: int, text: str, allowed: list[str]) -> dict[int, str] | str:
    """`--byzantine` of `bft cluster`: `I=NAME` items at index I, bare `NAME` items at the last
    nodes not taken (`equivocate` alone is node N-1); or the reason it cannot run."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    names = [item.partition("=")[2].strip() if "=" in item else item for item in items]
    checked = _behaviour_list(nodes, ",".join(names), allowed)
    if isinstance(checked, str):
        return checked
    placed: dict[int, str] = {}
    for item in items:
        index, sep, name = item.partition("=")
        if not sep:
            continue
        if not index.strip().isdigit() or int(index) >= nodes:
            return f"{index.strip()!r} in {item!r} is not a node index (0..{nodes - 1})"
        if int(index) in placed:
            return f"node {int(index)} is given two behaviours"
        placed[int(index)] = name.strip()
    free = [i for i in reversed(range(nodes)) if i not in placed]
    for item in items:
        if "=" not in item:
            placed[free.pop(0)] = item
    return dict(sorted(placed.items()))


def _run_chaos_cluster(args: argparse.Namespace, nodes: int, byzantine: dict[int, str]) -> int:
    import time

    import trio
    from rich.console import Console

    from bft.chaos.live import run_live
    from bft.chaos.runner import ChaosError
    from bft.node.errors import NodeError

    out = (
        args.home if args.home is not None else Path("chaos-runs") / f"live-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    if out.exists() and any(out.iterdir()):
        print(f"bft cluster --chaos: {out} is not empty (a fresh cluster is written there)", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    try:
        code: int = trio.run(run_live, out, nodes, byzantine, args.load, Console())
    except (ChaosError, NodeError) as exc:
        print(f"bft cluster --chaos: {exc}", file=sys.stderr)
        return 2
    return code


def _parse_behaviours(nodes: int, text: str) -> tuple[dict[int, str], bool] | str:
    from bft.campaign import behaviour_names

    names = _behaviour_list(nodes, text, behaviour_names())
    if isinstance(names, str):
        return names
    others = [b for b in names if b != "twins"]
    return dict(enumerate(others)), "twins" in names


def _run_sim(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bft.campaign import FACTORIES, run_campaign_jobs
    from bft.sim.runner import run_schedule
    from bft.sim.spec import ScheduleResult, SimSpec
    from bft.sim.trace import format_summary, format_trace
    from bft.sim.world import TraceEntry

    _check_sim_options(args)
    console = Console(stderr=True)
    parsed = _parse_behaviours(args.nodes, args.byzantine)
    if isinstance(parsed, str):
        print(f"bft sim: {parsed}", file=sys.stderr)
        return 2
    byzantine, twins = parsed
    try:
        spec = SimSpec(
            nodes=args.nodes,
            byzantine=byzantine,
            twins=twins,
            crashes=not args.no_crashes,
            short_timeouts=args.short_timeouts,
            commit_chain=args.commit_chain,
            quorum_store=args.quorum_store,
            leader_reputation=args.leader_reputation,
            state_sync=args.state_sync,
            retain_blocks=args.retain_blocks,
        )
    except ValueError as e:
        print(f"bft sim: {e}", file=sys.stderr)
        return 2

    if args.seed is not None:
        if args.trace:
            trace: list[TraceEntry] = []
            result = run_schedule(spec, args.seed, FACTORIES, trace=trace)
            print(format_trace(result, trace))
            return 0 if result.ok else 1
        result = run_schedule(spec, args.seed, FACTORIES)
        print("\n".join(format_summary(result)))
        if not result.ok:
            print(result.failure_report())
            return 1
        print("no violations")
        return 0

    first_seed = 0 if args.first_seed is None else args.first_seed
    seeds = range(first_seed, first_seed + (_SIM_SEEDS if args.seeds is None else args.seeds))
    jobs = 1 if args.jobs is None else args.jobs
    violations = 0
    with Progress(
        TextColumn("[bold]bft sim[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=args.quiet,
        transient=False,
    ) as progress:
        task = progress.add_task("sim", total=len(seeds), status="")
        commits = 0
        done = 0

        def on_result(r: ScheduleResult) -> None:
            nonlocal commits, violations, done
            done += 1
            commits += r.commits
            if not r.ok:
                violations += len(r.violations)
                progress.console.print(r.failure_report())
            progress.update(task, advance=1, status=f"commits {commits}  violations {violations}")

        try:
            campaign = run_campaign_jobs(spec, seeds, jobs, on_result)
        except KeyboardInterrupt:
            campaign = None
    if campaign is None:
        # The workers, if any, are terminated and reaped by now.
        console.print(f"bft sim: interrupted after {done} schedules, {violations} violations")
        return 130
    print(
        f"nodes {spec.nodes}, behaviours {','.join(spec.behaviour_names()) or 'none'}: "
        f"{campaign.schedules} schedules, {campaign.total_commits} blocks committed "
        f"(lowest honest height per schedule, summed), {len(campaign.failures)} violations, "
        f"{campaign.sim_time_s:.0f}s simulated in {campaign.wall_time_s:.1f}s real, "
        f"{campaign.schedules_per_s:.1f} schedules/s"
    )
    if not campaign.ok:
        for r in campaign.failed:
            print(f"replay: {r.replay_command}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
