#!/usr/bin/env bash
# Provision what the tests need on a bare Debian bookworm machine (root): a Docker engine, a local
# Debian base image (no registry is reachable), qemu for ppc64le containers. Idempotent: what is
# already there is reused. Prints one line per step.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[provision %(%H:%M:%S)T] %s\n' -1 "$*"; }

need_pkgs=()
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
[ -x /usr/bin/qemu-ppc64le-static ] || need_pkgs+=(qemu-user-static)
command -v update-binfmts >/dev/null || need_pkgs+=(binfmt-support)
command -v podman >/dev/null || need_pkgs+=(podman)   # the second engine (--engine podman): tests marked podman
command -v newuidmap >/dev/null || need_pkgs+=(uidmap) # rootless podman's user namespace (podman only recommends it)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "apt-get install ${need_pkgs[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

if ! docker version >/dev/null 2>&1; then
  log "starting dockerd"
  mkdir -p /var/lib/docker
  nohup dockerd --data-root /var/lib/docker >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker version >/dev/null 2>&1 && break; sleep 1; done
  docker version >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/dockerd.log" >&2; tail -20 /var/log/dockerd.log >&2; exit 1; }
fi
log "engine $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"
log "podman $(podman version --format '{{.Client.Version}}') (images are moved in from Docker by the tests)"

# A base imported before the chmod below has `/` 0700 in its layer: rebuilt, so images built on it
# afterwards run for non-root users too (runner images built on the old one keep its layer until rebuilt).
base_root_mode() {
  docker save local/debian:bookworm | python3 -c '
import json, sys, tarfile
with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tar:
    for member in tar:  # a docker-archive of one single-layer image: the layer comes before the manifest
        if not member.isfile() or not (member.name.endswith("layer.tar") or member.name.startswith("blobs/")):
            continue
        try:
            with tarfile.open(fileobj=tar.extractfile(member), mode="r|") as layer:
                root = next(iter(layer), None)
        except tarfile.TarError:  # a JSON blob (containerd image store), not a layer
            continue
        if root is not None and root.name in (".", "./"):
            print(oct(root.mode & 0o777)); break'
}
if docker image inspect local/debian:bookworm >/dev/null 2>&1 && [ "$(base_root_mode)" = "0o700" ]; then
  log "local/debian:bookworm has / 0700 (imported before provision made it 0755): rebuilding it"
  docker rmi local/debian:bookworm >/dev/null
fi
if ! docker image inspect local/debian:bookworm >/dev/null 2>&1; then
  log "debootstrap bookworm -> local/debian:bookworm"
  rootfs=$(mktemp -d /tmp/rootfs.XXXXXX)
  chmod 755 "$rootfs"   # mktemp's 0700 would become the image's `/`: no non-root user could run anything
                        # where rootless podman stores images with vfs (it keeps the layer's own `/`)
  mirror=$(images/debian-mirror.sh)   # the archive this machine's apt uses; empty: debootstrap's default
  debootstrap --variant=minbase bookworm "$rootfs" $mirror >/tmp/debootstrap.log 2>&1 \
    || { tail -20 /tmp/debootstrap.log >&2; exit 1; }
  tar -C "$rootfs" -c . | docker import - local/debian:bookworm >/dev/null
  rm -rf "$rootfs"
fi
log "base image local/debian:bookworm $(docker image inspect -f '{{.Id}}' local/debian:bookworm | cut -c1-19)"

# Rootless podman (tests/reproduce/test_podman_rootless.py runs the podman engine as this user):
# a plain user with subordinate uid/gid ranges for its user namespace (useradd allocates them on Debian).
id -u runner-rootless >/dev/null 2>&1 || useradd --create-home runner-rootless
grep -q '^runner-rootless:' /etc/subuid || usermod --add-subuids 1065536-1131071 runner-rootless
grep -q '^runner-rootless:' /etc/subgid || usermod --add-subgids 1065536-1131071 runner-rootless
# Rootless podman's network for RUN steps that need one (apt in the system layer of a rootless
# build) is slirp4netns, which opens /dev/net/tun as the user: 0666 is its mode on a stock Debian,
# this machine's devtmpfs has it 0600 ("open /dev/net/tun: Permission denied").
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then chmod 0666 /dev/net/tun; fi
log "rootless podman user runner-rootless (uid $(id -u runner-rootless), $(grep '^runner-rootless:' /etc/subuid))"

log "one-node Slurm cluster (slurm-wlm + munge)"
bash .ci/slurm-up.sh

if [ -x images/ppc64le/setup-emulation.sh ] && [ "${RUNNER_SKIP_PPC64LE:-0}" != 1 ]; then
  log "ppc64le emulation and base image"
  images/ppc64le/setup-emulation.sh
fi
