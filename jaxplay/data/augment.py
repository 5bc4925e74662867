"""Data augmentation of image batches on the device, inside the compiled train step.

Drawn from the trial's own key and the step, so it is reproducible, resumes exactly, differs
between batched trials, and costs the host (and the input pipeline) nothing.
  `flip`       horizontal flip of half the images;
  `crop_flip`  the standard CIFAR recipe: pad 4 pixels with zeros, crop back at a random offset,
               then flip.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

AUGMENTATIONS = ("none", "flip", "crop_flip")
CROP_PAD = 4


def apply(name: str, images, key):
    """Augmented (batch, height, width, channels) images; `name` is one of AUGMENTATIONS."""
    if name == "none":
        return images
    crop_key, flip_key = jax.random.split(key)
    batch, height, width, channels = images.shape
    if name == "crop_flip":
        padded = jnp.pad(images, ((0, 0), (CROP_PAD, CROP_PAD), (CROP_PAD, CROP_PAD), (0, 0)))
        offsets = jax.random.randint(crop_key, (batch, 2), 0, 2 * CROP_PAD + 1)
        images = jax.vmap(
            lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (height, width, channels))
        )(padded, offsets)
    flip = jax.random.bernoulli(flip_key, 0.5, (batch,))
    return jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)
