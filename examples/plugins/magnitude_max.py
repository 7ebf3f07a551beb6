"""A merge-method plugin: for each value, the parent value with the largest weighted magnitude.

Its parameters are its keyword arguments; their annotations and defaults are what a
config is validated against (``scale`` must be positive here).
"""

from typing import Annotated

import torch
from pydantic import Field

from evo_merge.merge import merge_method


@merge_method("magnitude_max", elementwise=True)
def magnitude_max(tensors, weights, *, generator, scale: Annotated[float, Field(gt=0)] = 1.0):
    stacked = torch.stack([w * t.float() for w, t in zip(weights, tensors)])
    picked = torch.gather(stacked, 0, stacked.abs().argmax(0, keepdim=True))[0]
    return (scale * picked).to(tensors[0].dtype)
