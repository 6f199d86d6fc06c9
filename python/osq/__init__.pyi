from ._osq import Model as Model
from ._osq import calibrate as calibrate
from ._osq import __version__ as __version__

__all__ = ["Model", "calibrate", "__version__"]
