"""Catalog parsing and validation (no engine)."""

from __future__ import annotations

import pytest
from images_helpers import IMAGES, copy_images_dir, rewrite

from runner.errors import ImageError
from runner.images.catalog import PLATFORMS, load_catalog


def test_repository_catalog_lists_every_framework_and_variant():
    cat = load_catalog()
    assert cat.path == (IMAGES / "images.toml").resolve()
    assert set(cat.names()) == {"pytorch-cpu", "pytorch-cuda", "pytorch-ppc64le",
                                "tensorflow-cpu", "tensorflow-cuda", "tensorflow-ppc64le", "mxnet-cpu", "mxnet-cuda"}
    for entry in cat:
        assert entry.platform in PLATFORMS
        assert "@sha256:" in entry.base and len(entry.base.rsplit(":", 1)[1]) == 64
        assert entry.python == "3.11"
        assert entry.lockfile.parent == (IMAGES / "locks").resolve()
        assert entry.tag == f"runner/{entry.name}:{entry.framework_version}"
        assert entry.dockerfile.is_file(), entry.dockerfile
    assert cat.get("pytorch-cpu").requirements[0] == "torch==2.13.0+cpu"
    assert cat.get("tensorflow-cpu").requirements[0] == "tensorflow-cpu==2.21.0"
    assert not cat.get("tensorflow-ppc64le").buildable
    mx = cat.get("mxnet-cpu")
    assert mx.requirements == ("mxnet==1.9.1", "numpy==1.23.5", "pillow==13.0.0", "pip")
    assert mx.reported_version == "1.9.1"
    assert cat.get("mxnet-cuda").requirements[0] == "mxnet-cu112==1.9.1"


@pytest.mark.parametrize(("framework", "variant", "name"), [
    ("pytorch", "cpu", "pytorch-cpu"), ("tensorflow", "cuda", "tensorflow-cuda"),
    ("pytorch", "ppc64le", "pytorch-ppc64le"), ("mxnet", "cpu", "mxnet-cpu"), ("mxnet", "cuda", "mxnet-cuda"),
])
def test_for_run_picks_the_entry(framework, variant, name):
    assert load_catalog().for_run(framework, variant).name == name


def test_unknown_image_name_is_one_line_with_the_choices():
    with pytest.raises(ImageError) as err:
        load_catalog().get("pytorch-gpu")
    line = err.value.describe()
    assert "\n" not in line
    assert "no image named 'pytorch-gpu'" in line and "fix: use one of: pytorch-cpu" in line
    assert str(IMAGES / "images.toml") in line


def test_for_run_unknown_combination():
    with pytest.raises(ImageError, match="no ppc64le image for mxnet"):
        load_catalog().for_run("mxnet", "ppc64le")


def test_entry_without_digest_names_file_line_and_field(tmp_path):
    catalog = copy_images_dir(tmp_path)
    rewrite(catalog, "debian:bookworm-slim@sha256:88200866dfff7ea7f5cbcb6ec7c8a701889efe6fe859fe64d6990e4b07ea4171",
            "debian:bookworm-slim")
    with pytest.raises(ImageError) as err:
        load_catalog(catalog)
    e = err.value
    assert e.field == "images.pytorch-cpu.base"
    assert "not pinned by digest" in e.message and "@sha256:" in (e.fix or "")
    assert e.line == next(i for i, line in enumerate(catalog.read_text().splitlines(), 1)
                          if line.strip() == "[images.pytorch-cpu]")


@pytest.mark.parametrize(("old", "new", "field", "message"), [
    ('variant = "cpu"', 'variant = "gpu"', "images.pytorch-cpu.variant", "not one of"),
    ('platform = "linux/amd64"', 'platform = "linux/ppc64le"', "images.pytorch-cpu.platform", "does not fit"),
    ('requirements = ["torch==2.13.0+cpu", "numpy", "pillow==13.0.0", "pip"]',
     'requirements = ["torch==2.13.0+cpu", "numpy", "pillow==13.0.0"]',
     "images.pytorch-cpu.requirements", "pip is not among"),
    ('recipe = "pip"', 'recipe = "pip"\ncolour = "blue"', "images.pytorch-cpu.colour", "unknown field"),
    ('python = "3.11"', 'python = 3.11', "images.pytorch-cpu.python", "non-empty string"),
    ('debian = ["python3"]', 'debian = ["python3", "Bad Name"]', "images.pytorch-cpu.debian", "not a Debian"),
    ('framework_package = "pip:torch"', 'framework_package = "torch"', "images.pytorch-cpu.framework_package",
     "SOURCE:NAME"),
])
def test_bad_fields_are_rejected(tmp_path, old, new, field, message):
    catalog = copy_images_dir(tmp_path)
    rewrite(catalog, old, new)
    with pytest.raises(ImageError) as err:
        load_catalog(catalog)
    assert err.value.field == field
    assert message in err.value.message
    assert err.value.fix


def test_two_entries_for_one_framework_and_variant(tmp_path):
    catalog = copy_images_dir(tmp_path)
    rewrite(catalog, 'variant = "cuda"\nplatform = "linux/amd64"', 'variant = "cpu"\nplatform = "linux/amd64"')
    with pytest.raises(ImageError, match="both pytorch/cpu"):
        load_catalog(catalog)


def test_missing_catalog_bad_toml_and_schema(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_catalog(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("schema = 1\n[images.x\n")
    with pytest.raises(ImageError, match="not valid TOML") as err:
        load_catalog(bad)
    assert err.value.line == 2
    bad.write_text("schema = 2\n[images.x]\n")
    with pytest.raises(ImageError, match="schema is 2"):
        load_catalog(bad)


def test_entry_sha_changes_with_fields_not_with_comments_or_order(tmp_path):
    original = load_catalog().get("pytorch-cpu").sha256
    catalog = copy_images_dir(tmp_path)
    rewrite(catalog, 'python = "3.11"\nglibc = "2.36"', '# a comment\nglibc = "2.36"\npython = "3.11"')
    assert load_catalog(catalog).get("pytorch-cpu").sha256 == original
    rewrite(catalog, 'note = "multi-GB', 'note = "Multi-GB')  # another entry: this one is unchanged
    assert load_catalog(catalog).get("pytorch-cpu").sha256 == original
    rewrite(catalog, 'framework_version = "2.13.0"', 'framework_version = "2.13.1"')
    assert load_catalog(catalog).get("pytorch-cpu").sha256 != original
