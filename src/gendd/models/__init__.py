"""Networks: the autoencoder and denoiser of the generator, and the evaluation networks."""
