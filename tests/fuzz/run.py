"""Coverage-guided fuzzing of the targets in `targets.py` with atheris (libFuzzer).

    python tests/fuzz/run.py TARGET|all --runs N [--seconds S] [--corpus DIR]

Owns: the command, one libFuzzer process per target (seeded from and growing the corpus in
`tests/fuzz/corpus/<target>/`), the merge that keeps that corpus minimal, the summary line per
target and the exit code: 0 if no target crashed, 1 if one did (its reproducer is written to
`tests/fuzz/crashes/<target>/` and the command that replays it is printed), 2 if atheris is
missing. May not: be needed by CI (`test_fuzz_corpus.py` replays the corpus without atheris).

How: libFuzzer owns its process (it exits when done) and re-executes its own argv[0] to merge,
so each target runs in a child started through a small generated wrapper script: fuzz into a
scratch copy of the corpus, then `-merge=1` the scratch copy into a fresh directory that replaces
the committed one. The merged set covers every feature the run reached with the fewest,
smallest inputs; a hard cap on file count keeps the repository small even so.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

HERE: Final = Path(__file__).resolve().parent
ROOT: Final = HERE.parent.parent
DEFAULT_CORPUS: Final = HERE / "corpus"
CRASHES: Final = HERE / "crashes"
TARGET_NAMES: Final = (
    "cbor",
    "wire",
    "handshake_listener",
    "handshake_dialer",
    "frames",
    "api_parse",
    "asgi",
)
# Longer inputs add nothing the mutations cannot express (targets expand short programs into
# whole handshakes and frame streams), and short ones keep the corpus small.
MAX_LEN_BYTES: Final = 4096
MAX_CORPUS_FILES: Final = 300
# Per input: far above any target's normal time, so only a real hang reports as a timeout.
INPUT_TIMEOUT_S: Final = 20
RSS_LIMIT_MB: Final = 2048
# What instrumentation covers: the product and the libraries whose branches the targets reach.
_INSTRUMENT: Final = ["bft", "net", "crypto", "cbor2", "starlette", "targets"]
_ENV_ARGV0: Final = "BFT_FUZZ_ARGV0"
INSTALL_HINT: Final = 'atheris is not installed: pip install -e ".[fuzz]"  (or: pip install "atheris>=2.3")'


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one target's run did."""

    target: str
    runs: int
    wall_s: float
    execs_per_s: int
    crashed: bool
    corpus_files: int
    corpus_bytes: int
    reproducer: Path | None


def _load_atheris() -> Any:
    try:
        return importlib.import_module("atheris")
    except ImportError:
        return None


def _child(target: str, libfuzzer_args: list[str]) -> None:
    """Inside the libFuzzer process: instrument, import the target, fuzz (never returns)."""
    atheris = _load_atheris()
    if atheris is None:
        print(INSTALL_HINT, file=sys.stderr)
        sys.exit(2)
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    with atheris.instrument_imports(include=_INSTRUMENT):
        targets = importlib.import_module("targets")
    fn = targets.TARGETS[target]
    argv0 = os.environ.get(_ENV_ARGV0, sys.argv[0])
    atheris.Setup([argv0, *libfuzzer_args], fn)
    atheris.Fuzz()


def _wrapper(scratch: Path, target: str) -> Path:
    """An executable that starts the child for `target`; libFuzzer re-runs it to merge."""
    path = scratch / f"fuzz-{target}"
    path.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" --child {target} "$@"\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _seed(corpus: Path, target: str) -> None:
    """An empty corpus starts from the target's seeds (valid inputs of every mode)."""
    if any(corpus.iterdir()):
        return
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    targets = importlib.import_module("targets")
    for data in targets.seeds(target):
        (corpus / hashlib.sha1(data).hexdigest()).write_bytes(data)


def _launch(wrapper: Path, args: list[str], log: Path) -> int:
    env = dict(os.environ, **{_ENV_ARGV0: str(wrapper)})
    with log.open("wb") as out:
        return subprocess.run([str(wrapper), *args], stdout=out, stderr=subprocess.STDOUT, env=env).returncode


def _cap(corpus: Path) -> None:
    """Keep the smallest MAX_CORPUS_FILES files (merge already dropped redundant ones)."""
    files = sorted(corpus.iterdir(), key=lambda p: (p.stat().st_size, p.name))
    for path in files[MAX_CORPUS_FILES:]:
        path.unlink()


def fuzz(target: str, runs: int, seconds: int | None, corpus_root: Path) -> Outcome:
    corpus = corpus_root / target
    corpus.mkdir(parents=True, exist_ok=True)
    _seed(corpus, target)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target}-") as tmp:
        scratch = Path(tmp)
        work, merged, artifacts = scratch / "work", scratch / "merged", scratch / "artifacts"
        for d in (merged, artifacts):
            d.mkdir()
        shutil.copytree(corpus, work)
        wrapper = _wrapper(scratch, target)
        args = [
            f"-runs={runs}",
            f"-max_len={MAX_LEN_BYTES}",
            f"-timeout={INPUT_TIMEOUT_S}",
            f"-rss_limit_mb={RSS_LIMIT_MB}",
            f"-artifact_prefix={artifacts}/",
            "-print_final_stats=1",
        ]
        if seconds is not None:
            args.append(f"-max_total_time={seconds}")
        log = scratch / "fuzz.log"
        started = time.monotonic()
        code = _launch(wrapper, [*args, str(work)], log)
        wall_s = time.monotonic() - started
        text = log.read_text(errors="replace")
        done = re.search(r"Done (\d+) runs in (\d+) second", text)
        last = re.findall(r"^#(\d+)\s", text, re.M)
        total = int(done.group(1)) if done else int(last[-1]) if last else 0
        reproducer = None
        found = sorted(artifacts.iterdir())
        if code != 0 or found:
            keep = CRASHES / target
            keep.mkdir(parents=True, exist_ok=True)
            for path in found:
                shutil.copy(path, keep / path.name)
            shutil.copy(log, keep / "fuzz.log")
            reproducer = keep / found[0].name if found else keep / "fuzz.log"
        else:
            merge_log = scratch / "merge.log"
            code = _launch(
                wrapper, ["-merge=1", f"-max_len={MAX_LEN_BYTES}", str(merged), str(work)], merge_log
            )
            if code != 0 or not any(merged.iterdir()):
                raise RuntimeError(f"merging the corpus of {target} failed:\n{merge_log.read_text()[-2000:]}")
            shutil.rmtree(corpus)
            shutil.copytree(merged, corpus)
            _cap(corpus)
    files = list(corpus.iterdir())
    return Outcome(
        target=target,
        runs=total,
        wall_s=wall_s,
        execs_per_s=round(total / wall_s) if wall_s > 0 else 0,
        crashed=reproducer is not None,
        corpus_files=len(files),
        corpus_bytes=sum(p.stat().st_size for p in files),
        reproducer=reproducer,
    )


def _report(o: Outcome) -> None:
    print(
        f"target={o.target} runs={o.runs} wall_s={o.wall_s:.1f} execs_per_s={o.execs_per_s} "
        f"crashes={int(o.crashed)} corpus_files={o.corpus_files} corpus_bytes={o.corpus_bytes}",
        flush=True,
    )
    if o.reproducer is not None:
        print(f"  reproducer: {o.reproducer}")
        print(f"  replay: python tests/fuzz/run.py --replay {o.target} {o.reproducer}")


def replay(target: str, path: Path) -> int:
    """Run one input through `target` uninstrumented, letting any failure show its traceback."""
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    targets = importlib.import_module("targets")
    targets.TARGETS[target](path.read_bytes())
    print(f"target={target} input={path} passed")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        _child(argv[1], argv[2:])
        return 0
    parser = argparse.ArgumentParser(description="Coverage-guided fuzzing of the node's decoders (atheris).")
    parser.add_argument("target", choices=[*TARGET_NAMES, "all"])
    parser.add_argument("input", nargs="?", type=Path, help="with --replay: the input file to run")
    parser.add_argument("--runs", type=int, default=100_000, help="inputs per target (default 100000)")
    parser.add_argument("--seconds", type=int, help="stop a target after this many seconds")
    parser.add_argument(
        "--corpus", type=Path, default=DEFAULT_CORPUS, help="corpus root (one dir per target)"
    )
    parser.add_argument("--replay", action="store_true", help="run one input file through TARGET")
    args = parser.parse_args(argv)
    if args.replay:
        if args.target == "all" or args.input is None:
            parser.error("--replay needs one TARGET and an input file")
        return replay(args.target, args.input)
    if _load_atheris() is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    names = TARGET_NAMES if args.target == "all" else (args.target,)
    crashed = False
    for name in names:
        outcome = fuzz(name, args.runs, args.seconds, args.corpus.resolve())
        _report(outcome)
        crashed = crashed or outcome.crashed
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
