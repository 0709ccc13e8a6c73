"""``evsim.load``: a Network from a model file or a bundled model's name, that reads event files.

The engine takes events, never files: the readers (evsim.datasets.formats) lie above it. The
Network built here carries the reader, so that ``network.run(path)`` reads the file; a Network
built another way (``Network.from_file``, ``Network(graph, weights)``) refuses a path with a
message that names this function.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evsim.datasets.formats import read_events
from evsim.engine.network import Network
from evsim.errors import ModelError
from evsim.interop.nir import import_nir


def load(path_or_name, dtype=np.float32, *, dt_us: int | None = None, timesteps: int | None = None,
         semantics: str = "nir", neuron_dt_s: float | None = None) -> Network:
    """A Network from a model file path, or the name of a model bundled with evsim.

    A ``.nir`` file is imported first (evsim.interop.nir.import_nir): ``dt_us`` and ``timesteps``
    give its input encoding, ``semantics`` whose reading of the neurons to follow.
    """
    if str(path_or_name).lower().endswith(".nir"):
        model = import_nir(path_or_name, dt_us=dt_us, timesteps=timesteps, semantics=semantics,
                           neuron_dt_s=neuron_dt_s)
        return Network(model.graph, model.weights, dtype=dtype, name=Path(path_or_name).stem, read_file=read_events)
    if (dt_us, timesteps, neuron_dt_s) != (None, None, None) or semantics != "nir":
        raise ModelError("dt_us, timesteps, semantics and neuron_dt_s apply to .nir files only")
    return Network.from_file(path_or_name, dtype=dtype, read_file=read_events)
