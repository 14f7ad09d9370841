"""`runner bundle publish`: a copy of a bundle ready to deposit beside a paper.

In order, and nothing is written unless every step before succeeds:
1. the bundle verifies (every byte against its manifest; a signature present must be valid);
2. the redaction is re-checked against this machine's secrets and identities (leaks.py);
3. in a staging folder beside `<out>/<bundle name>`: the bundle's listed files, its manifest
   (and signature), the image archives (`--with-images`, through `runner images export`),
   REPRODUCING.md, ro-crate-metadata.json, and a new signature (`--sign KEY`);
4. the staging folder is renamed into place (an existing one is never replaced); with
   `archive=True` a reproducible `<bundle name>.tar.gz` of it is written beside it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from runner.audit.facts import load_facts
from runner.audit.verify import IMAGES_DIR, REPRODUCING, SIGNATURE_FILE, hash_file, verify_bundle
from runner.bundle.reader import MANIFEST
from runner.errors import CheckFailed, UsageError
from runner.fingerprint.redact import Redaction
from runner.publish.archive import write_tar_gz
from runner.publish.files import staged_folder, write_new
from runner.publish.leaks import check_publishable, find_leak, machine_redaction
from runner.publish.reproducing import ImageArchive, reproducing_md
from runner.publish.rocrate import METADATA_FILE, build_crate, crate_problems, file_entity, ref


@dataclass
class Published:
    path: Path
    files: int
    images: list[ImageArchive] = field(default_factory=list)
    signed_by: str | None = None
    archive: Path | None = None
    digest: str = ""  # the bundle digest (sha256 of the canonical manifest), the same for the copy


def _image_list(facts) -> list[ImageArchive]:
    images = facts.images()
    seen: dict[str, ImageArchive] = {}
    for row in facts.runs:
        image_id, fw = row.get("image_id"), row.get("framework") or "?"
        if not image_id or image_id in seen:
            continue
        record = images.get(fw, {})
        name = ((record.get("image") or {}).get("name") if isinstance(record.get("image"), dict) else None) or fw
        seen[image_id] = ImageArchive(fw, image_id, name, None)
    return list(seen.values())


def _export_images(images: list[ImageArchive], stage: Path) -> list[ImageArchive]:
    """Each image saved as images/<name>-<id12>.tar (with its .sha256) by the images export code."""
    try:
        from runner.images.archive import export_image
    except ImportError:  # pragma: no cover - only where the images package is absent
        raise UsageError("this runner has no image export (runner.images.archive)", field="--with-images",
                         fix="publish without --with-images; REPRODUCING.md then says how to rebuild them") from None
    from runner.engine.docker_client import connect

    client = connect()
    (stage / IMAGES_DIR).mkdir()
    out = []
    for image in images:
        rel = f"{IMAGES_DIR}/{image.name}-{image.image_id.split(':', 1)[-1][:12]}.tar"
        exported = export_image(client, image.image_id, stage / rel)
        if exported.image_id != image.image_id:
            raise CheckFailed(f"the engine saved image {exported.image_id}, the bundle ran {image.image_id}",
                              file=stage / rel, fix="import or rebuild the exact image the runs used")
        out.append(ImageArchive(image.framework, image.image_id, image.name, rel, exported.sha256, exported.size))
    return out


def publish_bundle(bundle: Path, out_dir: Path, *, with_images: bool = False, sign_key: Path | None = None,
                   license_id: str | None = None, redaction: Redaction | None = None,
                   archive: bool = False) -> Published:
    bundle = Path(bundle)
    result = verify_bundle(bundle)
    if not result.ok:
        raise CheckFailed(f"fails verification ({len(result.problems)} problem(s); first: "
                          f"{result.problems[0].line()}); nothing was published", file=bundle,
                          fix="run `runner bundle verify` and publish an intact bundle")
    facts = load_facts(bundle)
    manifest = facts.manifest
    digest = result.digest
    signed_src = (bundle / SIGNATURE_FILE).is_file()
    if signed_src and sign_key is not None:
        raise UsageError("is already signed; its signature is copied as it is", file=bundle / SIGNATURE_FILE,
                         field="--sign", fix="drop --sign, or publish an unsigned copy of the bundle")
    if sign_key is not None:
        from runner.publish.sign import load_private_key

        load_private_key(sign_key)  # a bad key is refused before anything is copied
    check_publishable(bundle, manifest, redaction)
    final = Path(out_dir) / bundle.name
    images = _image_list(facts)
    published = Published(final, 0, digest=digest)
    with staged_folder(final) as stage:
        for entry in manifest["files"]:
            target = stage / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(bundle / entry["path"], target)
        shutil.copyfile(bundle / MANIFEST, stage / MANIFEST)
        if signed_src:
            shutil.copyfile(bundle / SIGNATURE_FILE, stage / SIGNATURE_FILE)
        note = None
        if with_images and images:
            images = _export_images(images, stage)
        elif images:
            note = ("The container images are not included in this copy (it was published without "
                    "--with-images): see step 3.")
        extra = []
        for image in images:
            if image.path:
                extra.append(_entity(stage, image.path, about=f"#image-{image.image_id.split(':', 1)[-1][:12]}"))
                extra.append(_entity(stage, image.path + ".sha256"))
        text = reproducing_md(facts.bundle, images, signed=signed_src or sign_key is not None, archive_note=note,
                              digest=digest)
        write_new(stage / REPRODUCING, text.encode())
        extra.append(_entity(stage, REPRODUCING, description="how to verify and re-run this bundle"))
        crate = build_crate(facts.bundle, facts.images(), extra, license_id=license_id, digest=digest)
        problems = crate_problems(crate)
        if problems:  # a bug here, not the user's: say so plainly
            raise CheckFailed(f"the RO-Crate metadata does not conform: {problems[0]}", file=stage / METADATA_FILE,
                              fix="report this as a runner bug")
        write_new(stage / METADATA_FILE, (json.dumps(crate, indent=1, sort_keys=False) + "\n").encode())
        leak = find_leak(stage, [REPRODUCING, METADATA_FILE], redaction or machine_redaction())
        if leak is not None:
            raise CheckFailed(f"would contain {leak.what}; nothing was published", file=final / leak.path,
                              fix="remove it from the bundle, then publish again")
        if sign_key is not None:
            from runner.publish.sign import sign_bundle

            _, published.signed_by = sign_bundle(stage, sign_key)
        published.files = sum(1 for p in stage.rglob("*") if p.is_file())
    published.images = images
    if archive:
        published.archive = final.with_name(final.name + ".tar.gz")
        write_tar_gz(final, published.archive, final.name)
    return published


def _entity(stage: Path, rel: str, **extra: str) -> dict:
    size, sha = hash_file(stage / rel)
    about = extra.pop("about", None)
    entity = file_entity(rel, size, sha, **extra)
    if about:
        entity["about"] = ref(about)
    return entity
