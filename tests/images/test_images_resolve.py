"""Resolution pieces that need no engine and no network: tags, argv, reports, apt output."""

from __future__ import annotations

import hashlib

import pytest

from runner.errors import ImageError
from runner.images.catalog import load_catalog
from runner.images.lock import check_framework_pin, debian_upstream
from runner.images.lockfile import DebianPin, PipPin
from runner.images.resolve_debian import parse_simulation
from runner.images.resolve_pip import pins_from_report, platform_tags, resolve_argv


def test_platform_tags_cover_every_manylinux_glibc_up_to_the_base():
    tags = platform_tags("linux/amd64", "2.36")
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in tags
    assert tags[-1] == "manylinux2014_x86_64" and len(tags) == 21
    assert platform_tags("linux/ppc64le", "2.36")[0] == "manylinux_2_36_ppc64le"


def test_resolve_argv_is_an_argv_list_for_the_image_interpreter(tmp_path):
    entry = load_catalog().get("pytorch-cuda")
    argv = resolve_argv(entry, tmp_path / "r.json", tmp_path / "t")
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    assert argv[1:4] == ["-m", "pip", "install"] and "--dry-run" in argv
    assert argv[argv.index("--python-version") + 1] == "3.11"
    assert argv[argv.index("--abi") + 1] == "cp311"
    assert "torch==2.13.0,!=2.13.0+cpu" in argv  # one argument, no shell to split it


def test_pins_from_report_hashes_local_files_itself(tmp_path):
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    report = {"install": [
        {"metadata": {"name": "Demo_Pkg", "version": "1.0"}, "download_info": {"url": wheel.as_uri()}},
        {"metadata": {"name": "pip", "version": "26.3"},
         "download_info": {"url": "https://files.example/pip-26.3-py3-none-any.whl",
                           "archive_info": {"hashes": {"sha256": "e" * 64}}}},
    ]}
    pins = pins_from_report(report, load_catalog().get("pytorch-cpu"))
    assert [(p.name, p.version, p.sha256) for p in pins] == [("demo-pkg", "1.0", (digest,)),
                                                           ("pip", "26.3", ("e" * 64,))]
    report["install"][0]["download_info"]["archive_info"] = {"hashes": {"sha256": "0" * 64}}
    with pytest.raises(ImageError, match="pip's report says"):
        pins_from_report(report, load_catalog().get("pytorch-cpu"))
    del report["install"][1]["download_info"]["archive_info"]
    report["install"].pop(0)
    with pytest.raises(ImageError, match="no sha256 known for pip==26.3"):
        pins_from_report(report, load_catalog().get("pytorch-cpu"))


APT_OUTPUT = """\
Reading package lists...
NOTE: This is only a simulation!
Inst libssl3 (3.0.20-1~deb12u2 Debian:12.15/oldstable [amd64])
Inst libc6 [2.36-9+deb12u9] (2.36-9+deb12u10 Debian:12.15/oldstable [amd64])
Inst python3-numpy:ppc64el (1:1.24.2-1+deb12u1 Debian:12.15/oldstable [ppc64el])
Conf libssl3 (3.0.20-1~deb12u2 Debian:12.15/oldstable [amd64])
"""


def test_parse_apt_simulation():
    assert parse_simulation(APT_OUTPUT) == [DebianPin("libc6", "2.36-9+deb12u10"),
                                            DebianPin("libssl3", "3.0.20-1~deb12u2"),
                                            DebianPin("python3-numpy", "1:1.24.2-1+deb12u1")]


@pytest.mark.parametrize(("version", "upstream"), [
    ("1.13.1+dfsg-4", "1.13.1"), ("1:1.24.2-1+deb12u1", "1.24.2"), ("3.11.2-1+b1", "3.11.2"), ("2.0", "2.0"),
])
def test_debian_upstream(version, upstream):
    assert debian_upstream(version) == upstream


def test_framework_pin_must_match_the_catalog():
    cat = load_catalog()
    torch = PipPin("torch", "2.13.0+cpu", ("a" * 64,))
    check_framework_pin(cat.get("pytorch-cpu"), [torch], [])
    with pytest.raises(ImageError, match="resolved to 2.14.1"):
        check_framework_pin(cat.get("pytorch-cpu"), [PipPin("torch", "2.14.1", ("a" * 64,))], [])
    with pytest.raises(ImageError, match="not among the packages"):
        check_framework_pin(cat.get("tensorflow-cpu"), [torch], [])
    check_framework_pin(cat.get("pytorch-ppc64le"), [], [DebianPin("python3-torch", "1.13.1+dfsg-4")])
