"""gdvision: classical vision problems solved by gradient descent in PyTorch.

Importing the package is cheap: torch is imported only when a function that needs it is first used,
so ``gdvision --help`` answers fast. Public functions live in small modules, one job each:

- :mod:`gdvision.io.images`: image reading/writing (B,C,H,W float tensors in [0, 1]), atomic writes.
- :mod:`gdvision.device`: device selection (``auto|cpu|cuda|cuda:N|mps``) and seeding.
- :mod:`gdvision.filters.separable`: separable filters (Gaussian, Sobel, Scharr, Laplacian) with OpenCV borders.
- :mod:`gdvision.pyramid`: Gaussian image pyramids.
- :mod:`gdvision.coords`: pixel <-> normalized coordinate conversion.
- :mod:`gdvision.warp`: homography warping with validity masks.
- :mod:`gdvision.losses`: differentiable photometric and smoothness losses.
- :mod:`gdvision.optim`: the shared coarse-to-fine optimisation loop.
- :mod:`gdvision.register.motion`: motion models (translation ... homography) and their parameterisation.
- :mod:`gdvision.register.solver`: the registration solver.
"""

from __future__ import annotations

__version__ = "0.1.0"
