"""The container's health check: exit 0 if the node whose home is $BFT_HOME (default /data)
answers 200 on its API's /health, else 1 (Docker's HEALTHCHECK runs it; stdlib only).

The API may listen on 0.0.0.0 (any interface) or on the container's own name: the check asks
127.0.0.1 on the port of `[api] listen` unless that names another host.
"""

from __future__ import annotations

import os
import sys
import tomllib
import urllib.request
from pathlib import Path


def main() -> int:
    home = Path(os.environ.get("BFT_HOME", "/data"))
    try:
        listen = tomllib.loads((home / "config.toml").read_text(encoding="utf-8"))["api"]["listen"]
        host, _, port = str(listen).rpartition(":")
        host = host.strip("[]")
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        url = f"http://{host if ':' not in host else f'[{host}]'}:{int(port)}/health"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return 0 if answer.status == 200 else 1
    except Exception as exc:  # any failure is "unhealthy", said on stderr for `docker inspect`
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
