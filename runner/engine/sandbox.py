"""The locked-down container every container engine (docker, podman) runs: one description.

Network off, all capabilities dropped, no-new-privileges, read-only root filesystem with a tmpfs
for scratch, a process limit, the dataset (and, for `dataset.decode: jpeg`, the JPEG folder), the
code, the run config and pretrained weights mounted read-only, only the run's output folder
writable, never root inside. The engines turn this one Launch into their own options, so both
enforce the same isolation (tests/reproduce/test_*_sandbox.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from runner.engine.base import Launch, Mount, RunRequest, workload_env
from runner.errors import EngineError

LABEL_BUNDLE = "io.runner.bundle"
LABEL_RUN = "io.runner.run"
LABEL_TOOL = "io.runner.tool"  # describe-only containers (info, models)
UNPRIVILEGED_UID = 65534  # "nobody": used when the host user is root, so nothing runs as root inside

CODE_MOUNT, DATA_MOUNT, OUT_MOUNT, CONFIG_MOUNT = "/opt/runner", "/data", "/out", "/run/runner.json"
WEIGHTS_MOUNT = "/weights/pretrained.npz"
IMAGES_MOUNT = "/images"  # dataset.decode: jpeg: the ImageNet JPEG folder (its index is at DATA_MOUNT)
TMPFS = {"/tmp": "rw,size=1g,mode=1777"}


def container_user() -> tuple[int, int]:
    """The uid:gid inside: the host user's own, except root's (65534 then). Rootless podman maps it
    to the same host user (--userns=keep-id), Docker and rootful podman use it as is."""
    uid, gid = os.getuid(), os.getgid()
    return (uid, gid) if uid != 0 else (UNPRIVILEGED_UID, UNPRIVILEGED_UID)


def chown_tree(path: Path, uid: int, gid: int) -> None:
    for p in [path, *path.rglob("*")]:
        os.chown(p, uid, gid, follow_symlinks=False)


def check_mountable(paths: list[Path]) -> None:
    """Folders a container run bind-mounts from: a ':' or ',' cannot be said in a volume option
    (`src:dst:mode`) to either engine, so such a folder is refused before anything is written."""
    for path in paths:
        text = str(Path(path).resolve())
        if ":" in text or "," in text:
            raise EngineError(f"a container cannot mount {text!r} (a ':' or ',' in the path)", file=text,
                              fix="use folders without ':' or ',' for --data-root, --results and --cache")


def container_launch(request: RunRequest, engine: str) -> Launch:
    """The run as a locked-down container of `request.image_id`."""
    if request.image_id is None:
        raise EngineError(f"run {request.run_id} has no image", fix="build it: runner images build")
    weights = WEIGHTS_MOUNT if request.weights_path is not None else None
    mounts = [Mount(request.code_dir.resolve(), CODE_MOUNT), Mount(request.data_dir.resolve(), DATA_MOUNT),
              Mount(request.config_path.resolve(), CONFIG_MOUNT), Mount(request.out_dir.resolve(), OUT_MOUNT, False)]
    if request.weights_path is not None:
        mounts.append(Mount(request.weights_path.resolve(), WEIGHTS_MOUNT))
    images = IMAGES_MOUNT if request.images_dir is not None else None
    if request.images_dir is not None:
        mounts.append(Mount(request.images_dir.resolve(), IMAGES_MOUNT))
    return Launch(run_id=request.run_id, bundle_id=request.bundle_id, engine=engine,
                  argv=("python3", *request.argv(CONFIG_MOUNT, DATA_MOUNT, OUT_MOUNT, weights, images)),
                  env=workload_env(request.threads, CODE_MOUNT, "/tmp"), mounts=tuple(mounts),
                  out_dir=request.out_dir.resolve(), image=request.image_id, workdir="/tmp",
                  devices=request.devices, limits=request.limits,
                  labels={LABEL_BUNDLE: request.bundle_id, LABEL_RUN: request.run_id})


def give_output_to_container(launch: Launch) -> None:
    """As root, the output folder is handed to the unprivileged container user before the run...
    A non-root host user is the container's user itself (rootless podman: keep-id): nothing to hand over."""
    if os.getuid() == 0:
        uid, gid = container_user()
        chown_tree(launch.out_dir, uid, gid)


def take_output_back(launch: Launch) -> None:
    """...and back to root after it, so the bundle writer owns what it moves."""
    if os.getuid() == 0:
        chown_tree(launch.out_dir, 0, 0)
