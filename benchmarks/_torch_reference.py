"""A PyTorch training step in the style of HobbitLong/SupContrast, for side-by-side timing (benchmark only).

Written for this benchmark from the published description of that code (shared/reference/seed.md §2): a CIFAR
ResNet-18 (3x3 stride-1 stem, no max-pool, basic blocks 2-2-2-2 at widths 64-128-256-512), a projection MLP
Linear(512, 512) - ReLU - Linear(512, 128) with L2-normalised output, the SupCon loss (L_out, denominator
A(i), loss scaled by tau / base_tau), and SGD with momentum 0.9 and weight decay 1e-4. Both views go through
the network as one batch of 2B images, as in `TwoCropTransform` + `torch.cat`.

Variants (`VARIANTS`): eager fp32; `torch.compile` of model + loss; bfloat16 autocast with channels-last
tensors; and both. PyTorch (CPU build) is an optional benchmark extra, never a runtime dependency of supcon.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - the usual PyTorch alias
from torch import nn

# name -> (torch.compile, bfloat16 autocast + channels-last)
VARIANTS = {
    "torch_eager_fp32": (False, False),
    "torch_compile_fp32": (True, False),
    "torch_eager_bf16_cl": (False, True),
    "torch_compile_bf16_cl": (True, True),
}


class BasicBlock(nn.Module):
    """Post-activation residual block: two 3x3 conv + BN, projection shortcut when the shape changes."""

    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x):  # [N, C_in, H, W] -> [N, C, H/s, W/s]
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet18(nn.Module):
    """ResNet-18 with the CIFAR stem: images [N, C, H, W] -> pooled features [N, 512 * width]."""

    def __init__(self, width: float = 1.0, image_channels: int = 3):
        super().__init__()
        widths = [max(1, int(c * width)) for c in (64, 128, 256, 512)]
        self.features = widths[-1]
        self.stem = nn.Sequential(nn.Conv2d(image_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers, in_channels = [], widths[0]
        for stage, channels in enumerate(widths):
            for block in range(2):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock(in_channels, channels, stride))
                in_channels = channels
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        x = self.layers(self.stem(x))  # [N, F, H/8, W/8]
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # [N, F]


class SupConModel(nn.Module):
    """Encoder + projection head with L2-normalised output [N, projection[-1]].

    `projection` lists the Dense widths, ReLU between them (e.g. (512, 128): the SupContrast MLP; (128,): one
    linear layer without bias, the fmnist_table2.gin head).
    """

    def __init__(self, projection: tuple = (512, 128), width: float = 1.0, image_channels: int = 3):
        super().__init__()
        self.encoder = CifarResNet18(width, image_channels)
        bias = len(projection) > 1  # SupContrast's MLP has biases; our one-layer projection has none
        layers, inputs = [], self.encoder.features
        for i, size in enumerate(projection):
            layers += [nn.Linear(inputs, size, bias=bias)] + ([nn.ReLU()] if i < len(projection) - 1 else [])
            inputs = size
        self.head = nn.Sequential(*layers)

    def forward(self, x):
        return F.normalize(self.head(self.encoder(x)), dim=1)


def supcon_loss(features, labels, temperature: float = 0.1, base_temperature: float = 0.07):
    """SupCon L_out over all views as anchors: features [B, V, D] (unit rows), labels [B] -> scalar."""
    batch, views = features.shape[0], features.shape[1]
    contrast = torch.cat(torch.unbind(features, dim=1), dim=0)  # [V*B, D], view-major
    logits = contrast.float() @ contrast.float().T / temperature  # [V*B, V*B]
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    not_self = 1.0 - torch.eye(views * batch, device=features.device)
    same = (labels[:, None] == labels[None, :]).float().repeat(views, views)  # [V*B, V*B]
    positives = same * not_self
    log_prob = logits - torch.log((torch.exp(logits) * not_self).sum(dim=1, keepdim=True))
    mean_log_prob_pos = (positives * log_prob).sum(1) / positives.sum(1).clamp(min=1.0)
    return -(temperature / base_temperature) * mean_log_prob_pos.mean()


def make_step(variant: str, batch: int, views: int = 2, seed: int = 0, threads: int | None = None,
              width: float = 1.0, image_channels: int = 3, projection: tuple = (512, 128)):
    """Builds model, optimizer and a `step(images [B, V, C, H, W], labels [B]) -> loss` for a variant."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    compiled, bf16 = VARIANTS[variant]
    model = SupConModel(projection, width, image_channels)
    layout = torch.channels_last if bf16 else torch.contiguous_format
    model = model.to(memory_format=layout).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)

    def forward_loss(images, labels):
        flat = images.flatten(0, 1).contiguous(memory_format=layout)  # [B*V, 3, H, W], sample-major
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            z = model(flat)  # [B*V, D]
        return supcon_loss(z.float().view(batch, views, -1), labels)

    loss_fn = torch.compile(forward_loss) if compiled else forward_loss

    def step(images, labels):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(images, labels)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def example_batch(batch: int, views: int = 2, size: int = 32, seed: int = 0, channels: int = 3):
    """Random normalised images [B, V, C, size, size] and labels [B] of 10 classes."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, views, channels, size, size, generator=generator)
    labels = torch.randint(0, 10, (batch,), generator=generator)
    return images, labels
