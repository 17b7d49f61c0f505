"""gendd: generative dataset distillation with a class-conditional latent diffusion model."""

__version__ = "0.1.0"
