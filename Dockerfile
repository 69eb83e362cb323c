# The node's image: `docker build -t bft-node .`, then `bft testnet --compose` or `--kubernetes`
# (README, "Beyond one machine"). Slim, a non-root user, the node home on the volume /data.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 BFT_HOME=/data

WORKDIR /src
COPY pyproject.toml README.md ./
COPY bft ./bft
COPY crypto ./crypto
COPY net ./net
COPY configs ./configs
RUN pip install --no-compile . && rm -rf /src

COPY docker/healthcheck.py /usr/local/bin/bft-healthcheck
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin bft \
    && mkdir -p /data && chown bft:bft /data && chmod 0700 /data

USER bft
WORKDIR /data
VOLUME ["/data"]
# 26600: peer-to-peer, 26601: the HTTP API (the ports `bft testnet` gives a node of its own host).
EXPOSE 26600 26601
HEALTHCHECK --interval=10s --timeout=6s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/bin/bft-healthcheck"]
ENTRYPOINT ["bft"]
CMD ["node", "--home", "/data"]
