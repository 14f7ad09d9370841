"""Redaction: what a bundle may say about the machine and the people who ran it.

Applied by default to every JSON document, log and table row before it is written:

- Environment variables are recorded from an allow-list only (`recorded_environment`); a
  deny pattern (TOKEN, SECRET, KEY, ...) drops a variable even when it is allow-listed.
- Host names, user names and home folders become stable salted labels (`host-3fa2c1`): two
  bundles from the same machine carry the same label without naming it.
- GPU UUIDs and serial numbers become labels too.
- Secrets are scrubbed from string VALUES anywhere (a token that leaked into a log line or a
  pip freeze URL): the values of secret-looking environment variables, and the user:password
  part of URLs.

`Redaction(enabled=False)` (`--no-redact`) keeps identities (host, user, home, GPU ids) and
records the whole environment, but never secrets: the deny pattern and secret scrubbing
stay on whatever the switch says.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import platform
import pwd
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SALT = "runner-redact-v1"
REDACTED = "<redacted>"

# Names recorded when redacting: exact names, and prefixes (ending in "_").
ENV_ALLOW = frozenset({
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "CUDA_LAUNCH_BLOCKING", "CUDA_MODULE_LOADING",
    "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
    "OMP_NUM_THREADS", "OMP_PROC_BIND", "OMP_PLACES", "OMP_SCHEDULE", "OMP_DYNAMIC",
    "MKL_NUM_THREADS", "MKL_DYNAMIC", "MKL_CBWR", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "XLA_FLAGS", "PYTHONHASHSEED", "PYTHONOPTIMIZE", "PYTHONDONTWRITEBYTECODE",
    "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_NUMERIC", "TZ", "SLURM_JOB_ID", "SLURM_CPUS_PER_TASK",
    "SLURM_CPUS_ON_NODE", "SLURM_GPUS", "SLURM_JOB_PARTITION", "SLURM_NTASKS",
})
ENV_ALLOW_PREFIXES = ("TF_", "NCCL_", "KMP_", "PYTORCH_", "TORCH_", "CUDNN_", "ONEDNN_", "DNNL_", "MXNET_")

# Terraform shares TensorFlow's TF_ prefix. TF_VAR_* and TF_CLI_ARGS* carry Terraform variable values
# (passwords among them) and TF_TOKEN_* registry tokens: secrets, never recorded, their values scrubbed.
# Terraform's other settings are not TensorFlow's: not recorded.
SECRET_PREFIXES = ("TF_VAR_", "TF_CLI_ARGS", "TF_TOKEN_")
NOT_TENSORFLOW = frozenset({
    "TF_LOG", "TF_LOG_PATH", "TF_LOG_CORE", "TF_LOG_PROVIDER", "TF_INPUT", "TF_DATA_DIR", "TF_WORKSPACE",
    "TF_IN_AUTOMATION", "TF_CLI_CONFIG_FILE", "TF_PLUGIN_CACHE_DIR", "TF_IGNORE", "TF_REGISTRY_DISCOVERY_RETRY",
    "TF_REGISTRY_CLIENT_TIMEOUT", "TF_STATE_PERSIST_INTERVAL",
})

_DENY_WORDS = ("TOKEN", "SECRET", "KEY", "PASSW", "CREDENTIAL", "AUTH", "COOKIE", "SESSION", "PRIVATE")
DENY = re.compile("|".join(_DENY_WORDS), re.IGNORECASE)
# Identity strings that name nobody: never turned into word-level replacements.
GENERIC_USERS = frozenset({"root", "nobody"})
# Shorter secret values are not scrubbed from text (a variable AUTH_ENABLED=1 must not erase
# every "1"); they are still never recorded as variables.
MIN_SECRET_LEN = 6

_GPU_ID = re.compile(r"\b(?:GPU|MIG)-[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\b")
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s:@\"']+:[^/\s@\"']+@")
_ID_KEYS = frozenset({"uuid", "serial", "gpu_uuid", "board_serial", "serial_number"})
_KEY_SPLIT = re.compile(r"[_\-.\s]+|(?<=[a-z0-9])(?=[A-Z])")


def secret_name(name: str) -> bool:
    """An environment variable whose name looks like it holds a secret."""
    return DENY.search(name) is not None or name.upper().startswith(SECRET_PREFIXES)


_WORD_STARTS = ("PASSW", "PASSPHRASE", "CREDENTIAL", "SECRET", "TOKEN", "COOKIE", "SESSION", "PRIVATE",
                "AUTHORIZ", "AUTHENTIC")
_WORD_ENDS = ("KEY", "KEYS", "TOKEN", "TOKENS", "SECRET", "SECRETS", "AUTH", "PASSWORD", "PASSWD")


def secret_key(key: str) -> bool:
    """A JSON key naming a secret, judged word by word (`api_key`, `authToken`, `apikey`; not `keyboard`)."""
    for part in _KEY_SPLIT.split(key):
        word = part.upper()
        if word and (word.startswith(_WORD_STARTS) or word.endswith(_WORD_ENDS)):
            return True
    return False


def allowed_variable(name: str) -> bool:
    return (name in ENV_ALLOW or name.startswith(ENV_ALLOW_PREFIXES)) and name not in NOT_TENSORFLOW


@dataclass(frozen=True)
class Redaction:
    """What to scrub, and how. Build one with `Redaction.for_this_machine()`."""

    enabled: bool = True
    salt: str = DEFAULT_SALT
    hostnames: tuple[str, ...] = ()
    usernames: tuple[str, ...] = ()
    homes: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    _patterns: list[tuple[re.Pattern[str], Any]] = field(default_factory=list, init=False, repr=False,
                                                         compare=False)
    _needles: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pats: list[tuple[re.Pattern[str], Any]] = []
        needles: list[str] = []
        for secret in sorted(set(self.secrets), key=len, reverse=True):
            for form in dict.fromkeys((secret, json.dumps(secret)[1:-1])):
                pats.append((re.compile(re.escape(form)), REDACTED))
                needles.append(form)
        if self.enabled:
            for home in sorted(set(self.homes), key=len, reverse=True):
                label = self.label("home", home)
                pats.append((re.compile(r"(?<![\w.-])" + re.escape(home) + r"(?![\w.-])"), label))
                needles.append(home)
            for kind, names in (("host", self.hostnames), ("user", self.usernames)):
                for name in sorted(set(names), key=len, reverse=True):
                    pats.append((re.compile(r"(?<![\w-])" + re.escape(name) + r"(?![\w-])"),
                                 self.label(kind, name)))
                    needles.append(name)
        object.__setattr__(self, "_patterns", pats)
        object.__setattr__(self, "_needles", tuple(needles))

    @classmethod
    def for_this_machine(cls, enabled: bool = True, environ: Mapping[str, str] | None = None,
                         salt: str = DEFAULT_SALT) -> Redaction:
        """The identities and secrets of the current host, user and environment."""
        env = os.environ if environ is None else environ
        return cls(enabled=enabled, salt=salt, hostnames=_hostnames(), usernames=_usernames(env),
                   homes=_homes(env), secrets=secret_values(env))

    def label(self, kind: str, value: str) -> str:
        """A stable, salted stand-in for an identifying value: `host-3fa2c1`."""
        digest = hashlib.sha256(f"{self.salt}\0{kind}\0{value}".encode()).hexdigest()
        return f"{kind}-{digest[:6]}"

    def text(self, s: str) -> str:
        """Scrub one string: secrets always; identities and GPU ids when enabled."""
        if "://" in s and "@" in s:
            s = _URL_CREDENTIALS.sub(lambda m: m.group("scheme") + REDACTED + "@", s)
        if self.enabled and ("GPU-" in s or "MIG-" in s):
            s = _GPU_ID.sub(lambda m: self.label("gpu", m.group(0)), s)
        if not any(n in s for n in self._needles):
            return s
        for pattern, replacement in self._patterns:
            s = pattern.sub(replacement, s)
        return s

    def data(self, raw: bytes) -> bytes:
        """`text()` for bytes (a large file): scanned for each needle first, decoded only when one is there."""
        if not any(n.encode() in raw for n in self._needles) and not (
                (b"://" in raw and b"@" in raw) or (self.enabled and (b"GPU-" in raw or b"MIG-" in raw))):
            return raw
        return self.text(raw.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")

    def __call__(self, obj: Any) -> Any:
        return redact(obj, self)


def redact(obj: Any, context: Redaction) -> Any:
    """A copy of a JSON structure with every key and string value scrubbed.

    Values under secret-looking keys are replaced; values under `uuid`/`serial` keys become
    labels when redaction is enabled.
    """
    if isinstance(obj, str):
        return context.text(obj)
    if isinstance(obj, Mapping):
        out: dict[Any, Any] = {}
        for key, value in obj.items():
            skey = context.text(key) if isinstance(key, str) else key
            if isinstance(key, str) and secret_key(key) and isinstance(value, str | bytes):
                out[skey] = REDACTED
            elif (context.enabled and isinstance(key, str) and key.lower() in _ID_KEYS
                  and isinstance(value, str) and value):
                out[skey] = value if value.startswith("gpu-") else context.label("gpu", value)
            else:
                out[skey] = redact(value, context)
        return out
    if isinstance(obj, list | tuple):
        return [redact(v, context) for v in obj]
    return obj


def recorded_environment(context: Redaction, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables a bundle records: allow-listed (all when not redacting), no secrets."""
    env = os.environ if environ is None else environ
    out = {}
    for name in sorted(env):
        if secret_name(name):
            continue
        if context.enabled and not allowed_variable(name):
            continue
        out[name] = context.text(env[name])
    return out


def secret_values(environ: Mapping[str, str]) -> tuple[str, ...]:
    """Values of secret-looking variables long enough to scrub from text safely."""
    return tuple(sorted({v for k, v in environ.items() if secret_name(k) and len(v) >= MIN_SECRET_LEN}))


def _hostnames() -> tuple[str, ...]:
    names = {socket.gethostname(), platform.node()}
    for name in list(names):
        names.add(name.split(".")[0])
    return tuple(sorted(n for n in names if n and n not in ("localhost",)))


def _usernames(env: Mapping[str, str]) -> tuple[str, ...]:
    names = {env.get(k, "") for k in ("USER", "LOGNAME", "SUDO_USER")}
    try:
        names.add(getpass.getuser())
    except (KeyError, OSError):
        pass
    try:
        names.add(pwd.getpwuid(os.getuid()).pw_name)
    except KeyError:
        pass
    return tuple(sorted(n for n in names if n and n not in GENERIC_USERS))


def _homes(env: Mapping[str, str]) -> tuple[str, ...]:
    homes = {env.get("HOME", ""), os.path.expanduser("~")}
    try:
        homes.add(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        pass
    return tuple(sorted(h.rstrip("/") for h in homes if h and h.rstrip("/") not in ("",)))
