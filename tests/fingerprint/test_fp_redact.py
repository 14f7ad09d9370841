"""Redaction: allow-listed variables, deny backstop, identity labels, secrets scrubbed from values."""

from __future__ import annotations

import json

from runner.fingerprint.redact import (
    REDACTED,
    Redaction,
    recorded_environment,
    redact,
    secret_key,
    secret_name,
)

ENV = {
    "CUDA_VISIBLE_DEVICES": "0,1", "OMP_NUM_THREADS": "4", "TF_ENABLE_ONEDNN_OPTS": "0",
    "NCCL_DEBUG": "INFO", "NCCL_IB_AUTH_TOKEN": "nccl-s3cret-999", "TF_API_KEY": "tf-key-123456",
    "PYTHONHASHSEED": "0", "LANG": "C.UTF-8", "MY_API_TOKEN": "s3cr3t-value", "AWS_SECRET_ACCESS_KEY": "abcdefghij",
    "GITHUB_PASSWORD": "hunter22", "FLAG_AUTH": "1", "PATH": "/usr/bin", "EDITOR": "vim",
    "HOME": "/home/alice-private", "USER": "alice-private",
}


def ctx(enabled=True):
    return Redaction(enabled=enabled, hostnames=("alice-workstation-7",), usernames=("alice-private",),
                     homes=("/home/alice-private",), secrets=("s3cr3t-value", "nccl-s3cret-999", "tf-key-123456",
                                                           "abcdefghij", "hunter22"))


def test_names():
    for name in ("MY_API_TOKEN", "aws_secret_access_key", "TF_API_KEY", "DB_PASSWORD", "GIT_CREDENTIALS",
                 "HTTP_AUTHORIZATION", "SESSION_ID", "COOKIE_JAR"):
        assert secret_name(name), name
    assert not secret_name("OMP_NUM_THREADS")
    for key in ("api_key", "authToken", "password", "apikey", "Authorization", "session_id", "x-auth"):
        assert secret_key(key), key
    for key in ("keyboard_layout", "author", "batch_size", "name", "keyframe_interval"):
        assert not secret_key(key), key


def test_recorded_environment_allow_list_and_deny_backstop():
    env = recorded_environment(ctx(), ENV)
    assert env == {"CUDA_VISIBLE_DEVICES": "0,1", "OMP_NUM_THREADS": "4", "TF_ENABLE_ONEDNN_OPTS": "0",
                   "NCCL_DEBUG": "INFO", "PYTHONHASHSEED": "0", "LANG": "C.UTF-8"}


def test_terraform_variables_are_not_tensorflows():
    """TF_ is Terraform's prefix too: its variable values (passwords) never land in a bundle."""
    env = {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_VAR_db_pw": "hunter2-db", "tf_var_region": "eu-west-1-secretish",
           "TF_CLI_ARGS_apply": "-var=db_password=hunter3-cli", "TF_TOKEN_app_terraform_io": "tok-abcdef",
           "TF_CLI_CONFIG_FILE": "/home/alice-private/.terraformrc", "TF_LOG": "DEBUG",
           "TF_XLA_FLAGS": "--tf_xla_auto_jit=2"}
    for enabled in (True, False):
        context = Redaction.for_this_machine(enabled=enabled, environ=env)
        recorded = recorded_environment(context, env)
        assert not any(k.upper().startswith(("TF_VAR_", "TF_CLI_ARGS", "TF_TOKEN_")) for k in recorded), recorded
        text = redact({"log": "terraform apply -var=db_password=hunter3-cli; region eu-west-1-secretish"}, context)
        assert "hunter3-cli" not in json.dumps(text) and "eu-west-1-secretish" not in json.dumps(text)
    assert recorded_environment(Redaction.for_this_machine(enabled=True, environ=env), env) == {
        "TF_ENABLE_ONEDNN_OPTS": "0", "TF_XLA_FLAGS": "--tf_xla_auto_jit=2"}


def test_no_redact_keeps_everything_but_secrets():
    env = recorded_environment(ctx(enabled=False), ENV)
    assert env["PATH"] == "/usr/bin" and env["USER"] == "alice-private" and env["HOME"] == "/home/alice-private"
    assert not any(secret_name(k) for k in env)
    assert "s3cr3t-value" not in json.dumps(env)


def test_identity_labels_are_stable_and_salted():
    a, b = ctx(), ctx()
    assert a.label("host", "alice-workstation-7") == b.label("host", "alice-workstation-7")
    assert a.label("host", "alice-workstation-7").startswith("host-")
    other = Redaction(salt="private-salt", hostnames=("alice-workstation-7",))
    assert other.label("host", "alice-workstation-7") != a.label("host", "alice-workstation-7")
    assert a.text("built on alice-workstation-7 by alice-private") == (
        f"built on {a.label('host', 'alice-workstation-7')} by {a.label('user', 'alice-private')}")


def test_text_scrubs_values_but_not_lookalike_words():
    c = ctx()
    line = ("Traceback: File /home/alice-private/src/x.py; token=s3cr3t-value; "
            "pip: pkg @ git+https://bob:gh-pat-xyz@github.com/o/r.git; /home/alice-privateer/y stays")
    out = c.text(line)
    assert "s3cr3t-value" not in out and "gh-pat-xyz" not in out and "bob:" not in out
    assert f"File {c.label('home', '/home/alice-private')}/src/x.py" in out
    assert "/home/alice-privateer/y" in out  # another folder, not this home
    assert c.text("alice-private-ish") == "alice-private-ish"


def test_gpu_ids_hashed():
    c = ctx()
    uuid = "GPU-8c1f3f6e-6d0b-4b7a-9f1e-0123456789ab"
    doc = {"devices": [{"uuid": uuid, "serial": "1650923012345", "name": "H100"}], "log": f"using {uuid}"}
    out = redact(doc, c)
    assert uuid not in json.dumps(out) and "1650923012345" not in json.dumps(out)
    assert out["devices"][0]["uuid"] == c.label("gpu", uuid) == out["log"].split()[-1]
    assert out["devices"][0]["name"] == "H100"
    kept = redact(doc, ctx(enabled=False))
    assert kept["devices"][0]["uuid"] == uuid and kept["devices"][0]["serial"] == "1650923012345"


def test_walk_scrubs_keys_values_and_secret_keys():
    c = ctx()
    doc = {"config": {"api_key": "short", "batch_size": 64, "nested": ["hunter22 in a list", 1.5, None]},
           "/home/alice-private/data": True, "note": 'quote" s3cr3t-value'}
    out = redact(doc, c)
    text = json.dumps(out)
    for secret in ("short", "hunter22", "s3cr3t-value", "alice-private"):
        assert secret not in text
    assert out["config"]["api_key"] == REDACTED and out["config"]["batch_size"] == 64
    assert out["config"]["nested"][1:] == [1.5, None]
    assert doc["config"]["api_key"] == "short"  # the input is not modified


def test_json_escaped_secret_in_text():
    c = Redaction(secrets=('pa"ss\\word',))
    line = json.dumps({"msg": 'x pa"ss\\word y'})
    assert "ss" not in c.text(line).replace("<redacted>", "")


def test_for_this_machine_picks_up_identities(monkeypatch):
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: "alice-workstation-7.lab.example")
    env = {"USER": "alice-private", "HOME": "/home/alice-private", "MY_API_TOKEN": "s3cr3t-value", "X_KEY": "1"}
    c = Redaction.for_this_machine(environ=env)
    assert "alice-workstation-7" in c.hostnames and "alice-workstation-7.lab.example" in c.hostnames
    assert "alice-private" in c.usernames and "/home/alice-private" in c.homes
    assert c.secrets == ("s3cr3t-value",)  # "1" is too short to scrub from text safely
    assert "root" not in c.usernames  # generic account names are not identities
