"""vidm: video implicit diffusion models with a shared VAE, a content model and a motion model."""
import os

# Idle OpenMP threads sleep instead of spinning. With spinning (the default), a CPU run whose cores are
# shared with any other busy process slowed down about 50x here (2.2 s instead of 0.05 s per network
# call on 2 cores); this must be set before torch starts its thread pool, so it lives in the package init.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
