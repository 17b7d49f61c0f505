"""The autoencoder: diffusers' KL autoencoder (AutoencoderKL), sized for small images.

Each encoder level but the last halves the resolution, so the latent grid is the (padded) image
size divided by 2 ** (levels - 1). Images are padded up to a multiple of that factor first
(`latent_model.ImageGeometry`, its `pad_to` from `downsample_factor`), and decoded images
are cropped back.
"""

from __future__ import annotations

from diffusers import AutoencoderKL


def build_autoencoder(channels: int, block_out_channels: tuple[int, ...],
                      latent_channels: int, layers_per_block: int = 1,
                      norm_num_groups: int = 16, mid_attention: bool = True) -> AutoencoderKL:
    levels = len(block_out_channels)
    return AutoencoderKL(
        in_channels=channels, out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
        latent_channels=latent_channels, norm_num_groups=norm_num_groups,
        mid_block_add_attention=mid_attention, scaling_factor=1.0)


def downsample_factor(block_out_channels: tuple[int, ...]) -> int:
    return 2 ** (len(block_out_channels) - 1)
