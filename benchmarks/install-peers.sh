#!/bin/sh
# Install the peer tools that bench_peers.py measures beside sfu (and GNU time, for their peak
# RSS). Run by `make bench`, never by
# `make test` or CI. apt-get runs only as root and only for packages that are missing; imgtool
# goes into a scratch venv (default benchmarks/work/imgvenv, override with IMGTOOL_VENV).
# A failure here is not fatal: bench_peers.py lists every peer it cannot run, with the reason.
set -u

PACKAGES="rauc squashfs-tools swupdate cpio mender-artifact u-boot-tools device-tree-compiler time xdelta3 zstd"
IMGTOOL_VENV=${IMGTOOL_VENV:-$(cd "$(dirname "$0")" && pwd)/work/imgvenv}
# detools (a delta peer of bench_delta.py) in its own scratch venv
DETOOLS_VENV=$(cd "$(dirname "$0")" && pwd)/work/detoolsvenv

missing=""
for pkg in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $pkg"
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "install-peers: apt-get install$missing"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null \
            || echo "install-peers: apt-get failed; the report will say which peers are missing"
    else
        echo "install-peers: missing$missing (not root or no apt-get: not installing)"
    fi
fi

if [ ! -x "$IMGTOOL_VENV/bin/imgtool" ]; then
    echo "install-peers: pip install imgtool into $IMGTOOL_VENV"
    { python3 -m venv "$IMGTOOL_VENV" && "$IMGTOOL_VENV/bin/pip" install -q imgtool; } \
        || echo "install-peers: imgtool install failed; the report will say so"
fi
if [ ! -x "$DETOOLS_VENV/bin/detools" ]; then
    echo "install-peers: pip install detools into $DETOOLS_VENV"
    { python3 -m venv "$DETOOLS_VENV" && "$DETOOLS_VENV/bin/pip" install -q detools; } \
        || echo "install-peers: detools install failed; bench_delta will say so"
fi
exit 0
