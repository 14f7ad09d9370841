"""The PyTorch ppc64le image, built and run for real under qemu emulation (slow)."""

from __future__ import annotations

import pytest
from images_helpers import LOCAL_BASE_PPC64LE

from runner.images.build import ensure_image
from runner.images.catalog import load_catalog
from runner.images.containers import run_command
from runner.images.verify import verify_image

pytestmark = [pytest.mark.docker, pytest.mark.emulated, pytest.mark.slow]

TRAIN = """
import platform, torch
torch.manual_seed(0)
nn = torch.nn
model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 2, (16,))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
losses = []
for _ in range(5):
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    losses.append(loss.item())
print(platform.machine(), torch.__version__, losses[0], losses[-1])
"""


@pytest.fixture(scope="module")
def ppc_image(client):
    import docker.errors

    try:
        client.images.get(LOCAL_BASE_PPC64LE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{LOCAL_BASE_PPC64LE} is missing: run images/ppc64le/setup-emulation.sh as root")
    entry = load_catalog().get("pytorch-ppc64le")
    return entry, ensure_image(client, entry, "always", base=LOCAL_BASE_PPC64LE)


def test_image_metadata_and_kernel_say_ppc64le(client, ppc_image):
    entry, image_id = ppc_image
    assert client.images.get(image_id).attrs["Architecture"] == "ppc64le"
    assert run_command(client, image_id, ["uname", "-m"]).stdout.strip() == "ppc64le"
    report = verify_image(client, entry)
    assert report.ok, report.failures


def test_a_few_training_steps_under_emulation(client, ppc_image):
    _, image_id = ppc_image
    result = run_command(client, image_id, ["python", "-c", TRAIN], timeout=1200)
    assert result.exit_code == 0, result.stderr[-2000:]
    machine, version, first, last = result.stdout.split()[-4:]
    assert (machine, version) == ("ppc64le", "1.13.0a0")  # Debian's 1.13.1 reports 1.13.0a0
    assert float(last) < float(first)


def test_no_certificate_of_the_build_machine(client, ppc_image):
    """Debian's ca-certificates comes in as a dependency of python3-torch; the host's own CAs must not."""
    from pathlib import Path

    _, image_id = ppc_image
    host_cas = ["".join(p.read_text().split("-----")[2].split()) for p in
                Path("/usr/local/share/ca-certificates").glob("*.crt")]
    bundle = run_command(client, image_id, ["sh", "-c", "cat /etc/ssl/certs/*.crt /etc/ssl/certs/*.pem 2>/dev/null; "
                                                        "ls -A /usr/local/share/ca-certificates 2>/dev/null"])
    flat = "".join(bundle.stdout.split())
    assert not any(ca and ca in flat for ca in host_cas)
