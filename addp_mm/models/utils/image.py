"""Images: the pixels the models read (:data:`PIXELS_0_1`), and generated pixels -> uint8 images
-> PNG files (used by the generation API and its hook)."""
import numpy as np
import torch


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generated pixels (float, about [0, 1], unclamped) -> uint8 RGB ``B x 3 x H x W``.

    As the release saves its samples: ``clamp(x * 255, 0, 255)`` then truncation to uint8.
    """
    return (images.detach().float() * 255).clamp(0, 255).to(torch.uint8)


def save_image(image: torch.Tensor, path: str) -> None:
    """Write one uint8 ``3 x H x W`` (or ``H x W x 3``) RGB image (PNG by the file name)."""
    from PIL import Image
    array = image.detach().cpu()
    if array.dim() == 3 and array.shape[0] == 3:
        array = array.permute(1, 2, 0)
    Image.fromarray(np.ascontiguousarray(array.numpy())).save(path)


# the data preprocessor of the models that read pixels as the releases do (the tokenizer reads RGB
# in [0, 1], no mean / std): uint8 BGR batches -> float RGB / 255
PIXELS_0_1 = dict(type='ImgDataPreprocessor', mean=[0., 0., 0.], std=[255., 255., 255.],
                  bgr_to_rgb=True)
