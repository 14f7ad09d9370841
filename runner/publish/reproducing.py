"""REPRODUCING.md: the exact commands that re-run a published bundle and judge the result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.audit.tolerances import TOLERANCES, Tolerance
from runner.bundle.reader import Bundle


@dataclass(frozen=True)
class ImageArchive:
    framework: str
    image_id: str
    name: str  # catalog name (pytorch-cpu), or the framework when unknown
    path: str | None  # relative path of the archive in the published copy; None when not included
    sha256: str | None = None
    size: int | None = None


def _rule_text(t: Tolerance) -> str:
    if t.rule == "relative":
        return "within a relative band (" + ", ".join(f"{v:.0%} on {k}" for k, v in t.relative.items()) + ")"
    if t.rule == "seed_spread":
        return (f"within {t.k_std:g} x the std of the original's repeats (at least {t.floor:g}), "
                f"or ±{t.fixed:g} without repeats")
    if t.rule == "exact":
        return "equal"
    rest = f"; otherwise {_rule_text(t.otherwise)}" if t.otherwise else "; not compared otherwise"
    return f"bit-identical for deterministic CPU runs{rest}"


def _tolerance_lines() -> list[str]:
    return [f"- {t.label}: {_rule_text(t)}" for t in TOLERANCES.values()]


def reproducing_md(bundle: Bundle, images: list[ImageArchive], *, signed: bool, archive_note: str | None = None,
                   digest: str | None = None) -> str:
    m = bundle.manifest
    name = bundle.path.name
    code = (m.get("fingerprint") or {}).get("code") or {}
    git = code.get("git") or {}
    dataset = (m.get("fingerprint") or {}).get("dataset") or {}
    spec_ds = (m.get("spec") or {}).get("dataset") or {}
    runs = m.get("runs") or []
    engines = sorted({r.get("engine") for r in runs if r.get("engine")})
    lines = [f"# Reproducing `{m.get('experiment')}` ({name})", "",
             f"This folder is a result bundle written by `runner` {m.get('runner_version')} on {m.get('created')}: "
             f"{len(runs)} runs, each with its events, log, environment record and resolved configuration, "
             "the Parquet tables in `tables/`, the workload code in `code/`, and `manifest.json` holding the size "
             "and sha256 of every file. `ro-crate-metadata.json` describes it as an RO-Crate "
             "(Process Run Crate 0.5).", "",
             "## 1. Check that nothing changed", "", "```sh",
             "runner bundle verify ." + (f" --digest {digest}" if digest else "")
             + (" --public-key SIGNER.pub.pem" if signed else ""), "```", ""]
    if digest:
        lines += [f"The bundle digest `{digest}` is the sha256 of the canonical `manifest.json`, which holds the "
                  "sha256 of every file (and `bundle.json` every fact the manifest states): cite it to name exactly "
                  "these results.", ""]
    if signed:
        lines += ["`manifest.json.sig` is a detached Ed25519 signature over `manifest.json`; pass the signer's "
                  "public key to check who signed it.", ""]
    lines += ["## 2. Install runner", "",
              f"Use runner {m.get('runner_version')}"
              + (f", at commit `{git.get('commit')}`" if git.get("commit") else "")
              + (" (the tree had uncommitted changes; `code/` holds the workload code exactly as it ran)"
                 if git.get("dirty") else "") + ".", "",
              f"The workload code's tree sha256 is `{code.get('tree_sha256')}`.", "",
              "## 3. Load the images", ""]
    if not images:
        lines += [f"These runs used the {', '.join(engines) or 'local'} engine without container images: the "
                  "framework versions are recorded in `environment/images/*.json` and the runs table; install the "
                  "same versions to re-run them.", ""]
    else:
        included = [i for i in images if i.path]
        if included:
            lines += ["```sh"] + [f"runner images import {i.path} --expect-id {i.image_id}" for i in included] \
                + ["```", ""]
        missing = [i for i in images if not i.path]
        if missing:
            lines += ["These images are not included (publish with `--with-images` to include them). Build them "
                      "from the pinned lockfiles and check their ids:", "", "```sh"]
            lines += [f"runner images build {i.name}    # expected id {i.image_id}" for i in missing] + ["```", ""]
            lines += ["A rebuilt image gets the same id only if the build is bit-for-bit reproducible; "
                      "`runner bundle diff` names any difference.", ""]
    lines += ["## 4. The dataset", ""]
    if spec_ds.get("synthetic") or dataset.get("synthetic"):
        lines += [f"Synthetic {spec_ds.get('name') or dataset.get('name')}: generated from the spec's seed; "
                  "nothing to download.", ""]
    else:
        lines += [f"{spec_ds.get('name') or dataset.get('name')}, root sha256 "
                  f"`{dataset.get('source_root_sha256') or dataset.get('root_sha256')}`:", "", "```sh",
                  f"runner data fetch {spec_ds.get('name') or dataset.get('name')}", "```", "",
                  "`runner reproduce` refuses data whose root hash differs.", ""]
    lines += ["## 5. Re-run and compare", "", "```sh", "runner reproduce .", "```", "",
              "This re-runs every run of this bundle into a new bundle and compares the two, run by run:", "",
              *_tolerance_lines(), "",
              "To compare two bundles yourself:", "", "```sh",
              "runner bundle diff . results/<experiment>/<new bundle>", "runner report . --out report", "```", ""]
    if archive_note:
        lines += ["## Notes", "", archive_note, ""]
    lines += ["## Runs", "", "| run | framework | sweep | repeat | seed | status | image |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| `{r.get('id')}` | {r.get('framework')} | {r.get('sweep')} | {r.get('repeat')} | {r.get('seed')} | "
              f"{r.get('status')} | {_short_id(r.get('image_id'))} |" for r in runs]
    return "\n".join(lines) + "\n"


def _short_id(image_id: Any) -> str:
    return f"`{image_id[:19]}`" if isinstance(image_id, str) else "-"
