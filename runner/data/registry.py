"""The datasets `runner` knows, by name: reader, class count, input size, normalisation.

An explicit dict, not discovery. `reader` is None for a dataset whose reader is not written
yet: naming it gives a clear "not supported yet" DatasetError. ImageNet folders are read by
`imagenet.ImagenetReader` (decoding needs Pillow, imported only when images are decoded).

Mean/std are per-channel, on pixel values scaled to [0, 1]:
* CIFAR-10 / CIFAR-100: the per-channel mean and standard deviation of the 50,000 official
  training images (the values most CIFAR code uses; CIFAR publishes none itself).
  `prepare` also records the statistics it measures on the data it prepared.
* ImageNet: the torchvision / Caffe values used by the reference ResNet-50 v1.5 training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runner.data.cifar import CIFAR10, CIFAR100, CifarLayout, CifarReader
from runner.data.imagenet import ImagenetReader
from runner.data.reader import DatasetReader
from runner.errors import DatasetError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    input_size: int  # side of the square image the models see by default
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    homepage: str
    layout: CifarLayout | None = None  # archive/folder description for the CIFAR family
    reader: Callable[[Path], DatasetReader] | None = None

    @property
    def supported(self) -> bool:
        return self.reader is not None

    def open(self, path: str | Path) -> DatasetReader:
        if self.reader is None:
            raise DatasetError(f"{self.name} datasets are not supported yet", file=path,
                               fix=f"use one of: {', '.join(n for n, i in REGISTRY.items() if i.supported)}")
        return self.reader(Path(path))


def _cifar(layout: CifarLayout) -> Callable[[Path], DatasetReader]:
    return lambda path: CifarReader(layout, path)


REGISTRY: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(
        name="cifar10", num_classes=10, input_size=32,
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html", layout=CIFAR10, reader=_cifar(CIFAR10),
    ),
    "cifar100": DatasetInfo(
        name="cifar100", num_classes=100, input_size=32,
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html", layout=CIFAR100, reader=_cifar(CIFAR100),
    ),
    "imagenet": DatasetInfo(
        name="imagenet", num_classes=1000, input_size=224,
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        homepage="https://www.image-net.org/", reader=ImagenetReader,
    ),
}


def get_dataset(name: str) -> DatasetInfo:
    try:
        return REGISTRY[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}", field="dataset",
                           fix=f"use one of: {', '.join(REGISTRY)}") from None
