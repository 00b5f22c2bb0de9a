"""The paper's networks and the chip-fitting networks, as stacks of spiking blocks.

Every network maps frames [T, B, C, H, W] to class scores [B, K] through a readout strategy.
Layer sizes follow FACTS.md section 2 (the released code); the chip-fitting networks follow the
limits of FACTS.md sections 3 (Speck) and 4 (Loihi netx).

Why the paper's arch A cannot go to Speck: a Speck core's neuron memory holds at most 64Ki words,
and arch A's second conv layer needs 128 * 2^(5+5) = 128Ki words for its 128 x 32 x 32 output
(FACTS.md section 3 formula). ``speck_net`` is the chip-fitting alternative.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from asa_snn.errors import AsaSnnError
from asa_snn.models.blocks import ConvBlock, LinearBlock, SumPool2d, check_frames, over_time

NeuronFactory = Callable[[], nn.Module]
"""Makes one neuron layer (a fresh module each call)."""
AttentionFactory = Callable[[int], nn.Module]
"""Makes the attention module of a conv block from its channel count."""


class MeanRate:
    """Readout: mean over time of the last layer's output, [T, B, K, ...] -> [B, K]."""

    def __call__(self, y: Tensor) -> Tensor:
        return y.flatten(2).mean(0)


@dataclass(frozen=True)
class GroupVote:
    """Readout of the 5-layer net: mean rate, then the mean of each group of ``group`` outputs.

    [T, B, group * K] -> [B, K].
    """

    group: int = 10

    def __call__(self, y: Tensor) -> Tensor:
        rate = y.flatten(2).mean(0)
        return rate.unflatten(1, (-1, self.group)).mean(2)


class SpikingNetwork(nn.Module):
    """A feed-forward stack of spiking blocks with a readout.

    Args:
        blocks: the layers in order (conv and linear blocks, or any module on [T, B, ...]).
        input_shape: (C, H, W) of one input frame.
        readout: maps the last block's output [T, B, ...] to scores [B, K].

    Shape:
        Input frames [T, B, C, H, W]; output [B, K].
    """

    def __init__(
        self,
        blocks: Sequence[nn.Module],
        input_shape: tuple[int, int, int],
        readout: Callable[[Tensor], Tensor],
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.input_shape = tuple(input_shape)
        self.readout = readout

    def forward(self, x: Tensor) -> Tensor:
        check_frames(x, self.input_shape, type(self).__name__)
        for block in self.blocks:
            x = block(x)
        return self.readout(x)


def _spatial_after(size: int, divisor: int, network: str, field: str) -> int:
    if size % divisor:
        raise AsaSnnError(f"{network}: input {field}={size} must be divisible by {divisor}")
    return size // divisor


def paper_three_layer(
    input_shape: tuple[int, int, int],
    num_classes: int,
    neuron: NeuronFactory,
    attention: AttentionFactory,
    channels: int = 128,
    first_channels: int = 64,
    hidden: int = 256,
    dropout: float = 0.1,
) -> SpikingNetwork:
    """Arch A of the paper (3 conv layers, TA-SNN net; Gesture, Gait-day) and, with 32 channels, arch D.

    conv3x3 C->64, 64->128 + avgpool2, 128->128 + avgpool2 (bias and BN each), flatten,
    FC -> 256 -> K (neuron after each, no BN), dropout on conv3 and both FCs, mean-rate readout.
    """
    name = "paper_three_layer"
    in_channels, height, width = input_shape
    height = _spatial_after(height, 4, name, "H")
    width = _spatial_after(width, 4, name, "W")
    widths = (first_channels, channels, channels)
    blocks: list[nn.Module] = []
    previous = in_channels
    for index, out in enumerate(widths):
        blocks.append(
            ConvBlock(
                nn.Conv2d(previous, out, 3, padding=1, bias=True),
                neuron(),
                attention(out),
                pool=nn.AvgPool2d(2) if index > 0 else None,
                dropout=dropout if index == 2 else 0.0,
            )
        )
        previous = out
    blocks.append(LinearBlock(nn.Linear(channels * height * width, hidden), neuron(), dropout))
    blocks.append(LinearBlock(nn.Linear(hidden, num_classes), neuron(), dropout))
    return SpikingNetwork(blocks, input_shape, MeanRate())


def paper_five_layer(
    input_shape: tuple[int, int, int],
    num_classes: int,
    neuron: NeuronFactory,
    attention: AttentionFactory,
    channels: int = 128,
    hidden: int = 512,
    vote: int = 10,
    dropout: float = 0.5,
) -> SpikingNetwork:
    """Arch B of the paper (5-layer PLIF net; Gesture, DailyAction).

    5 x {maxpool2 (not in layer 1), conv3x3 no bias, BN, neuron} at 128 channels, maxpool2,
    flatten, dropout, FC -> 512, neuron, dropout, FC -> vote * K, neuron, then the mean of each
    group of ``vote`` outputs.
    """
    name = "paper_five_layer"
    in_channels, height, width = input_shape
    height = _spatial_after(height, 32, name, "H")
    width = _spatial_after(width, 32, name, "W")
    blocks: list[nn.Module] = []
    previous = in_channels
    for index in range(5):
        blocks.append(
            ConvBlock(
                nn.Conv2d(previous, channels, 3, padding=1, bias=False),
                neuron(),
                attention(channels),
                pre_pool=nn.MaxPool2d(2) if index > 0 else None,
                post_pool=nn.MaxPool2d(2) if index == 4 else None,
            )
        )
        previous = channels
    blocks.append(LinearBlock(nn.Linear(channels * height * width, hidden), neuron(), dropout))
    blocks.append(LinearBlock(nn.Linear(hidden, vote * num_classes), neuron(), dropout))
    return SpikingNetwork(blocks, input_shape, GroupVote(vote))


def speck_net(
    input_shape: tuple[int, int, int],
    num_classes: int,
    neuron: NeuronFactory,
    attention: AttentionFactory,
    channels: Sequence[int] = (8, 16, 16),
) -> SpikingNetwork:
    """Chip-fitting network for Speck: conv-only, IAF neurons, sum pooling after the neurons.

    Each conv block is conv3x3 (no bias) -> BN -> attention -> neuron -> sumpool2 (one Speck core
    each); the classifier is a conv whose kernel covers the whole remaining map, so the linear
    layer is a conv as the chip needs (FACTS.md section 3). BN and attention are folded before
    deployment. Input at most 128 x 128; H and W divisible by 2^len(channels).
    """
    name = "speck_net"
    in_channels, height, width = input_shape
    if height > 128 or width > 128:
        raise AsaSnnError(f"{name}: Speck takes inputs of at most 128 x 128, got {height} x {width}")
    factor = 2 ** len(channels)
    height = _spatial_after(height, factor, name, "H")
    width = _spatial_after(width, factor, name, "W")
    blocks: list[nn.Module] = []
    previous = in_channels
    for out in channels:
        blocks.append(
            ConvBlock(
                nn.Conv2d(previous, out, 3, padding=1, bias=False),
                neuron(),
                attention(out),
                post_pool=SumPool2d(2),
            )
        )
        previous = out
    classifier = nn.Conv2d(previous, num_classes, (height, width), bias=False)
    blocks.append(ConvBlock(classifier, neuron(), nn.Identity(), batch_norm=False))
    return SpikingNetwork(blocks, input_shape, MeanRate())


def loihi_net(
    input_shape: tuple[int, int, int],
    num_classes: int,
    neuron: NeuronFactory,
    attention: AttentionFactory,
    channels: Sequence[int] = (16, 32),
    hidden: int = 64,
) -> SpikingNetwork:
    """Chip-fitting network for Loihi's netx layer set: strided convs, flatten, dense; no pooling.

    Each conv block is conv3x3 stride 2 (no bias) -> BN -> attention -> neuron; then flatten ->
    dense -> neuron -> dense -> neuron (FACTS.md section 4: netx has input / conv / dense /
    flatten layers only). H and W divisible by 2^len(channels).
    """
    name = "loihi_net"
    in_channels, height, width = input_shape
    factor = 2 ** len(channels)
    height = _spatial_after(height, factor, name, "H")
    width = _spatial_after(width, factor, name, "W")
    blocks: list[nn.Module] = []
    previous = in_channels
    for out in channels:
        blocks.append(
            ConvBlock(nn.Conv2d(previous, out, 3, stride=2, padding=1, bias=False), neuron(), attention(out))
        )
        previous = out
    blocks.append(LinearBlock(nn.Linear(previous * height * width, hidden, bias=False), neuron()))
    blocks.append(LinearBlock(nn.Linear(hidden, num_classes, bias=False), neuron()))
    return SpikingNetwork(blocks, input_shape, MeanRate())


class SEWBasicBlock(nn.Module):
    """Spike-element-wise residual block (Fang et al., NeurIPS 2021) with the ADD connection.

    out = SN(A(BN(conv(SN(A(BN(conv(s)))))))) + shortcut(s), shortcut = identity, or
    conv1x1 stride -> BN -> SN when the shape changes. Attention A sits after each BN.

    Shape:
        [T, B, C_in, H, W] -> [T, B, C_out, H / stride, W / stride].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        neuron: NeuronFactory,
        attention: AttentionFactory,
    ) -> None:
        super().__init__()
        self.first = ConvBlock(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False), neuron(), attention(out_channels)
        )
        self.second = ConvBlock(
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False), neuron(), attention(out_channels)
        )
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ConvBlock(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), neuron(), nn.Identity()
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.second(self.first(x)) + identity


def speck_resnet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    neuron: NeuronFactory,
    attention: AttentionFactory,
    channels: Sequence[int] = (8, 16),
) -> SpikingNetwork:
    """Chip-fitting residual network for Speck: one SEW block (ADD connection) between conv cores.

    stem conv3x3 C -> c0 (no bias) -> BN -> attention -> neuron -> sumpool2; a
    :class:`SEWBasicBlock` at c0 with the identity shortcut; conv3x3 c0 -> c1 -> BN -> attention
    -> neuron -> sumpool2; a classifier conv whose kernel covers the remaining map. Five Speck
    cores: the stem's pooled spikes go to the block's first conv and, through the add, to the conv
    after the block (two destinations, the chip's limit), which merges them with the block's
    output. A second identity block would give the stem a third destination, so there is one.
    Input at most 64 x 64 (the stem's neuron map, before pooling); H and W divisible by 4.
    """
    name = "speck_resnet"
    in_channels, height, width = input_shape
    if height > 64 or width > 64:
        raise AsaSnnError(
            f"{name}: a Speck core holds neuron maps of at most 64 x 64, got {height} x {width}"
        )
    if len(channels) != 2:
        raise AsaSnnError(f"{name}: channels must be two widths (stem and block, last conv), got {channels}")
    height = _spatial_after(height, 4, name, "H")
    width = _spatial_after(width, 4, name, "W")
    first, second = channels
    blocks: list[nn.Module] = [
        ConvBlock(
            nn.Conv2d(in_channels, first, 3, padding=1, bias=False),
            neuron(),
            attention(first),
            post_pool=SumPool2d(2),
        ),
        SEWBasicBlock(first, first, 1, neuron, attention),
        ConvBlock(
            nn.Conv2d(first, second, 3, padding=1, bias=False),
            neuron(),
            attention(second),
            post_pool=SumPool2d(2),
        ),
        ConvBlock(
            nn.Conv2d(second, num_classes, (height, width), bias=False), neuron(), nn.Identity(), False
        ),
    ]
    return SpikingNetwork(blocks, input_shape, MeanRate())


class SEWHead(nn.Module):
    """Global average pooling and a linear classifier applied per step: [T, B, C, H, W] -> [T, B, K]."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return over_time(self.fc, over_time(self.pool, x).flatten(2))


def sew_resnet18(
    input_shape: tuple[int, int, int],
    num_classes: int,
    neuron: NeuronFactory,
    attention: AttentionFactory,
    widths: Sequence[int] = (64, 128, 256, 512),
) -> SpikingNetwork:
    """SEW ResNet-18 (ADD connection) for HAR-DVS-sized data, as the paper's Res-SNN-18.

    Stem conv7x7 stride 2 -> BN -> A -> SN -> maxpool3 stride 2, four stages of two
    :class:`SEWBasicBlock`, global average pooling, linear classifier; the readout is the mean of
    the classifier's output over time.
    """
    in_channels = input_shape[0]
    stem = ConvBlock(
        nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False),
        neuron(),
        attention(widths[0]),
        post_pool=nn.MaxPool2d(3, 2, 1),
    )
    blocks: list[nn.Module] = [stem]
    previous = widths[0]
    for stage, width in enumerate(widths):
        stride = 1 if stage == 0 else 2
        blocks.append(SEWBasicBlock(previous, width, stride, neuron, attention))
        blocks.append(SEWBasicBlock(width, width, 1, neuron, attention))
        previous = width
    blocks.append(SEWHead(previous, num_classes))
    return SpikingNetwork(blocks, input_shape, MeanRate())
