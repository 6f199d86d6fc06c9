from os import PathLike
from typing import Any, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str

_Path = Union[str, PathLike[str]]

class Model:
    """A quantized model on the integer engine (thread-safe; compute releases the GIL)."""

    def __init__(
        self,
        path: _Path,
        threads: int = 0,
        isa: Optional[str] = None,
        max_length: Optional[int] = None,
        truncate: bool = True,
        batch_size: int = 32,
    ) -> None: ...
    def encode(
        self,
        texts: Sequence[str],
        batch_size: Optional[int] = None,
        normalize: Optional[bool] = None,
        truncate: Optional[bool] = None,
    ) -> npt.NDArray[np.float32]: ...
    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...
    def verify(
        self,
        texts: Sequence[str],
        fp32_model: Optional[_Path] = None,
        isas: Optional[Sequence[str]] = None,
        batch_size: int = 32,
    ) -> dict[str, Any]: ...
    def classify(self, texts: Sequence[str]) -> list[dict[str, Any]]: ...
    def head(self) -> tuple[str, list[str]] | None: ...
    def info(self) -> dict[str, Any]: ...
    @property
    def dim(self) -> int: ...

def calibrate(
    model_dir: _Path,
    data: _Path,
    output: _Path,
    method: str = "minmax",
    bits: str = "w8a8",
    samples: int = 256,
    seed: int = 0,
    gamma: bool = True,
    threads: int = 0,
    max_len: int = 128,
    loss: str = "hidden",
) -> dict[str, Any]: ...
