"""The content model learns its data, and a class-conditional one draws the class it is asked for."""
import torch

from vidm.config import ContentConfig, UNetConfig
from vidm.content_model import ContentModel
from vidm.sampling import ddim

from conftest import TINY_UNET


def class_pattern(labels: torch.Tensor) -> torch.Tensor:
    """Latents (B, 4, 8, 8): class 0 is +1 on the left half and -1 on the right; class 1 the mirror image."""
    left = torch.ones(4, 8, 8)
    left[..., 4:] = -1
    return torch.stack([left if y == 0 else -left for y in labels.tolist()])


def left_minus_right(z: torch.Tensor) -> torch.Tensor:
    return z[..., :4].mean(dim=(1, 2, 3)) - z[..., 4:].mean(dim=(1, 2, 3))


def test_a_tiny_class_conditional_content_model_draws_the_class_it_is_given():
    """Trained on two mirror-image classes, it must draw each when asked: a model that ignored its labels
    would draw either pattern (or their mean, zero) whatever the label."""
    torch.manual_seed(0)
    model = ContentModel(ContentConfig(unet=UNetConfig(num_classes=2, **TINY_UNET)))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    steps = model.diffusion.num_train_steps
    first_loss = None
    for _ in range(200):
        labels = torch.randint(0, 2, (16,))
        z0 = class_pattern(labels)
        loss = model.loss(z0, torch.randint(0, steps, (16,)), torch.randn_like(z0), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first_loss = first_loss if first_loss is not None else loss.item()
    assert loss.item() < 0.5 * first_loss

    model.eval()
    labels = torch.tensor([0] * 8 + [1] * 8)
    g = torch.Generator().manual_seed(1)
    z = ddim(model.denoiser(labels), torch.randn(16, 4, 8, 8, generator=g), model.diffusion.alphas_cumprod, 10)
    side = left_minus_right(z)
    assert (side[:8] > 1).all() and (side[8:] < -1).all(), side
