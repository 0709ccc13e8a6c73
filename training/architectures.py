"""The paper's networks (tables 4 and 5) as evsim graphs.

Every hidden LIF population has threshold 1 and leak 0.99 (tau_m = 100 steps, table 2); the
spiking average-pool populations threshold 0.75 and leak 1; the output integrator leak 0.99.
3x3 convolutions use padding 1, LeNet's 5x5 ones padding 2 (as in the authors' code). A residual
block is ``conv3x3 -> LIF -> conv3x3`` whose current sums with the skip path's (identity, or a
1x1 convolution with the block's stride) into the block's second LIF.

Population (and weight) names: ``conv1, conv2, ...``, ``pool1, ...``, ``fc1``, ``out``; a
residual block's skip weight is ``<second conv>_skip``.

Two places where tables 4/5 and the authors' code disagree, and we follow the tables:
ResNet11's third skip reads "512x1x1" in table 5, but the block's input has 256 maps, so it is
a 256 -> 512 1x1 convolution (as in the authors' code); ResNet11's last skip is a 512 -> 512 1x1
convolution with stride 2 as table 5 says, where the authors' code subsamples without weights.
"""

from __future__ import annotations

from evsim.errors import ModelError
from evsim.model.graph import INPUT, Graph, Population, Projection, conv_output_size

LIF_THRESHOLD = 1.0
LIF_LEAK = 0.99
POOL_THRESHOLD = 0.75
POOL_LEAK = 1.0
OUTPUT_LEAK = 0.99
CLASSES = 10


class _Builder:
    """Appends populations to a chain; each new one reads from the last."""

    def __init__(self, input_shape):
        self.input_shape = tuple(int(s) for s in input_shape)
        self.populations: list[Population] = []
        self.last = INPUT
        self.numbers = {"conv": 0, "pool": 0, "fc": 0}

    def _shape(self, name: str) -> tuple[int, ...]:
        if name == INPUT:
            return self.input_shape
        return next(p.shape for p in self.populations if p.name == name)

    def _append(self, kind: str, prefix: str, shape, projections, threshold: float, leak: float) -> str:
        self.numbers[prefix] += 1
        name = f"{prefix}{self.numbers[prefix]}"
        projections = tuple(Projection(**{**p, "weight": p["weight"] and p["weight"].format(name=name)})
                            for p in projections)
        self.populations.append(Population(name, kind, tuple(shape), projections, threshold, leak))
        self.last = name
        return name

    def _conv_shape(self, source: str, channels: int, kernel: int, stride: int) -> tuple[int, int, int]:
        _, h, w = self._shape(source)
        pad = kernel // 2
        return channels, conv_output_size(h, kernel, stride, pad), conv_output_size(w, kernel, stride, pad)

    def conv(self, channels: int, kernel: int = 3, stride: int = 1) -> str:
        shape = self._conv_shape(self.last, channels, kernel, stride)
        proj = dict(source=self.last, op="conv", weight="{name}", kernel=kernel, stride=stride, padding=kernel // 2)
        return self._append("lif", "conv", shape, [proj], LIF_THRESHOLD, LIF_LEAK)

    def residual(self, channels: int, stride: int, skip: str = "conv") -> str:
        """conv3x3 -> LIF -> conv3x3 (+ the skip path from the block input) -> LIF."""
        block_input = self.last
        self.conv(channels, 3, 1)
        shape = self._conv_shape(self.last, channels, 3, stride)
        main = dict(source=self.last, op="conv", weight="{name}", kernel=3, stride=stride, padding=1)
        if skip == "identity":
            if self._shape(block_input) != shape:
                raise ModelError(f"an identity skip needs matching shapes, not {self._shape(block_input)} -> {shape}")
            side = dict(source=block_input, op="identity", weight=None)
        else:
            side = dict(source=block_input, op="conv", weight="{name}_skip", kernel=1, stride=stride, padding=0)
        return self._append("lif", "conv", shape, [main, side], LIF_THRESHOLD, LIF_LEAK)

    def pool(self, kernel: int = 2) -> str:
        c, h, w = self._shape(self.last)
        proj = dict(source=self.last, op="avgpool", weight=None, kernel=kernel, stride=kernel)
        return self._append("pool", "pool", (c, h // kernel, w // kernel), [proj], POOL_THRESHOLD, POOL_LEAK)

    def fc(self, units: int) -> str:
        proj = dict(source=self.last, op="linear", weight="{name}")
        return self._append("lif", "fc", (units,), [proj], LIF_THRESHOLD, LIF_LEAK)

    def graph(self, timesteps: int, classes: int = CLASSES) -> Graph:
        out = Population("out", "output", (classes,), (Projection(self.last, "linear", "out"),),
                         threshold=LIF_THRESHOLD, leak=OUTPUT_LEAK)
        graph = Graph(self.input_shape, (*self.populations, out), timesteps)
        graph.validate()
        return graph


def lenet(input_shape=(1, 28, 28), timesteps: int = 50) -> Graph:
    """Table 4, "4 layer network": MNIST (1x28x28) or N-MNIST (2x34x34)."""
    b = _Builder(input_shape)
    b.conv(20, kernel=5)
    b.pool()
    b.conv(50, kernel=5)
    b.pool()
    b.fc(200)
    return b.graph(timesteps)


def vgg7(input_shape=(3, 32, 32), timesteps: int = 100) -> Graph:
    """Table 4, VGG7 (SVHN)."""
    b = _Builder(input_shape)
    b.conv(64)
    b.conv(64, stride=2)
    b.pool()
    b.conv(128)
    b.conv(128, stride=2)
    b.conv(128, stride=2)
    b.pool()
    b.fc(1024)
    return b.graph(timesteps)


def resnet7(input_shape=(3, 32, 32), timesteps: int = 100) -> Graph:
    """Table 4, ResNet7 (SVHN)."""
    b = _Builder(input_shape)
    b.conv(64)
    b.pool()
    b.residual(128, 2)
    b.residual(256, 2)
    b.fc(1024)
    return b.graph(timesteps)


def vgg9(input_shape=(3, 32, 32), timesteps: int = 100) -> Graph:
    """Table 5, VGG9 (CIFAR-10)."""
    b = _Builder(input_shape)
    b.conv(64)
    b.conv(64)
    b.pool()
    b.conv(128)
    b.conv(128)
    b.pool()
    b.conv(256)
    b.conv(256)
    b.conv(256)
    b.pool()
    b.fc(1024)
    return b.graph(timesteps)


def resnet9(input_shape=(3, 32, 32), timesteps: int = 100) -> Graph:
    """Table 5, ResNet9 (CIFAR-10)."""
    b = _Builder(input_shape)
    b.conv(64)
    b.pool()
    b.residual(128, 1)
    b.residual(256, 2)
    b.residual(512, 2)
    b.fc(1024)
    return b.graph(timesteps)


def resnet11(input_shape=(3, 32, 32), timesteps: int = 100) -> Graph:
    """Table 5, ResNet11 (CIFAR-10)."""
    b = _Builder(input_shape)
    b.conv(64)
    b.pool()
    b.residual(128, 1)
    b.residual(256, 2)
    b.residual(512, 1)
    b.residual(512, 2)
    b.fc(1024)
    return b.graph(timesteps)


ARCHITECTURES = {
    "lenet": lenet,
    "vgg7": vgg7,
    "resnet7": resnet7,
    "vgg9": vgg9,
    "resnet9": resnet9,
    "resnet11": resnet11,
}


def build(arch: str, input_shape, timesteps: int) -> Graph:
    try:
        factory = ARCHITECTURES[arch]
    except KeyError:
        raise ModelError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}") from None
    return factory(input_shape, timesteps)
