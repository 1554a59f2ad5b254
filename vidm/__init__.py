"""vidm: video implicit diffusion models with a shared VAE, a content model and a motion model."""

__version__ = "0.1.0"
