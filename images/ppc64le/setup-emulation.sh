#!/bin/sh
# Make ppc64le containers run on this x86_64 host (qemu user-mode emulation through binfmt_misc)
# and make the local ppc64le Debian base image the ppc64le catalog entries build FROM.
#
# Needs root, Debian's qemu-user-static, binfmt-support and debootstrap, and a running engine.
# Idempotent: every step checks first, so running it again only re-checks.
#
#   images/ppc64le/setup-emulation.sh [IMAGE]      (default IMAGE: local/debian:bookworm-ppc64le)
#
# Why debootstrap: no registry can be reached here, so the base cannot be pulled; the published
# debian:bookworm-slim@sha256:... named in images/images.toml is what users elsewhere build FROM.
# The imported image says "amd64" in its metadata whatever `docker import --platform` is told on
# engine 20.10; `runner images build` sets the architecture of the images it builds and checks it.
set -eu

IMAGE=${1:-local/debian:bookworm-ppc64le}
SUITE=bookworm
MIRROR=$("$(dirname "$0")/../debian-mirror.sh")   # this machine's apt archive; empty: debootstrap's default
BINFMT=/proc/sys/fs/binfmt_misc

if [ "$(id -u)" -ne 0 ]; then
    echo "setup-emulation: must run as root (mounts binfmt_misc, runs debootstrap)" >&2
    exit 2
fi
for tool in update-binfmts debootstrap docker; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "setup-emulation: $tool not found (fix: apt-get install -y qemu-user-static binfmt-support debootstrap docker.io)" >&2
        exit 2
    fi
done

# 1. binfmt_misc mounted, qemu-ppc64le registered and enabled.
if [ ! -e "$BINFMT/register" ]; then
    mount -t binfmt_misc binfmt_misc "$BINFMT"
fi
if [ ! -e "$BINFMT/qemu-ppc64le" ] || ! grep -q '^enabled' "$BINFMT/qemu-ppc64le"; then
    update-binfmts --enable qemu-ppc64le
fi
# fix_binary (flag F) lets containers use the interpreter without it existing inside them.
grep -q '^flags: .*F' "$BINFMT/qemu-ppc64le" || {
    echo "setup-emulation: qemu-ppc64le is registered without the F flag; containers cannot use it" >&2
    exit 1
}

# 2. The base image, made once.
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "setup-emulation: $IMAGE already exists"
else
    ROOTFS=$(mktemp -d /tmp/rootfs-ppc64le.XXXXXX)
    trap 'rm -rf "$ROOTFS"' EXIT
    debootstrap --arch=ppc64el --variant=minbase "$SUITE" "$ROOTFS" $MIRROR   # unquoted: empty means the default
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
    tar --numeric-owner -C "$ROOTFS" -c . | docker import - "$IMAGE"
fi

# 3. Check that it really runs as ppc64le.
arch=$(docker run --rm --network none "$IMAGE" uname -m)
if [ "$arch" != "ppc64le" ]; then
    echo "setup-emulation: $IMAGE runs as '$arch', expected ppc64le" >&2
    exit 1
fi
echo "setup-emulation: ok: $IMAGE runs as $arch under qemu"
