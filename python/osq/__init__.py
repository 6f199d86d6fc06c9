"""osq: integer-only CPU inference for BERT encoders quantized with Outlier Suppression.

>>> import osq
>>> m = osq.Model("out/os-w8a8", threads=2)
>>> m.encode(["a gripping film"]).shape
(1, 384)
"""

from ._osq import Model, calibrate, __version__

__all__ = ["Model", "calibrate", "__version__"]
