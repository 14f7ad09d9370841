"""A home folder is replaced only where it starts a path, not inside another path."""

from runner.fingerprint.redact import Redaction


def test_home_inside_another_path_is_left_alone():
    r = Redaction.for_this_machine(environ={"HOME": "/root", "USER": "root"})
    text = r.text("compiler /opt/rh/gcc-toolset-13/root/usr/bin/c++ and cache /root/.cache/x")
    assert "/opt/rh/gcc-toolset-13/root/usr/bin/c++" in text
    assert "/root/.cache" not in text
