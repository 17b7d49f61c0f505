"""The class-conditional denoiser: diffusers' UNet2DModel with multi-head self-attention blocks.

The class enters through a learned embedding added to the timestep embedding. Index
`num_classes` is the learned null class used for classifier-free guidance (labels are replaced
by it with probability `label_dropout` during training).
"""

from __future__ import annotations

from diffusers import UNet2DModel


def build_denoiser(latent_channels: int, latent_size: int, num_classes: int,
                   block_out_channels: tuple[int, ...], layers_per_block: int = 2,
                   attention_head_dim: int = 32, attention_levels: tuple[bool, ...] | None = None,
                   norm_num_groups: int = 32, dropout: float = 0.0) -> UNet2DModel:
    levels = len(block_out_channels)
    attention_levels = attention_levels or tuple(i > 0 for i in range(levels))
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention_levels)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention_levels))
    return UNet2DModel(
        sample_size=latent_size, in_channels=latent_channels, out_channels=latent_channels,
        down_block_types=down, up_block_types=up, block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block, attention_head_dim=attention_head_dim,
        norm_num_groups=norm_num_groups, dropout=dropout,
        num_class_embeds=num_classes + 1,  # + the null class
        resnet_time_scale_shift="scale_shift")
