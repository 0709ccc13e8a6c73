"""NIR import and export: a NIR graph as an evsim Graph with weights, and back.

NIR (the ``nir`` package's HDF5 format, 1.0) stores neurons as continuous-time equations without a
time step; every simulator reads them with its own step and its own spike rule. So an import names
whose reading to follow (``semantics``), and the result is an ordinary evsim model: populations
with evsim.model.neuron dynamics, projections, and the input encoding (event counts in bins of
``dt_us`` over ``timesteps`` steps, the sensor taken from the Input node).

Reading is h5py only: datasets and strings, never pickles or code (``nir.read`` is not used).


The package, one concept per module: ``nodes`` (the graph records and node types), ``hdf5`` (the
file: reading and writing NIR's HDF5 layout), ``checks`` (the graph's shape and the nodes' shapes), ``conv`` (the Conv2d node both ways),
``semantics`` (how each peer reads a neuron node), ``importer`` and ``builder`` (NIR -> evsim),
``exporter`` (evsim -> NIR).
"""

from evsim.interop.nir.checks import check_graph
from evsim.interop.nir.conv import conv_padding
from evsim.interop.nir.exporter import EXPORT_DT_S, IF_TAU_S, export_nir, is_passthrough_pool, model_to_nir, nudged
from evsim.interop.nir.hdf5 import content_digest, read_nir, write_nir
from evsim.interop.nir.importer import import_nir, nir_to_model
from evsim.interop.nir.nodes import (
    METADATA_PREFIX,
    NODE_TYPES,
    POOL_TYPES,
    READOUT_TYPES,
    SPIKING_TYPES,
    WEIGHT_TYPES,
    NirGraph,
    NirNode,
)
from evsim.interop.nir.semantics import DEFAULT_NEURON_DT_S, PEER_DT_S, SEMANTICS, UNITY, NeuronReading, read_neuron

__all__ = [
    "DEFAULT_NEURON_DT_S", "EXPORT_DT_S", "IF_TAU_S", "METADATA_PREFIX", "NODE_TYPES", "PEER_DT_S", "POOL_TYPES",
    "READOUT_TYPES", "SEMANTICS", "SPIKING_TYPES", "UNITY", "WEIGHT_TYPES", "NeuronReading", "NirGraph", "NirNode",
    "check_graph", "content_digest", "conv_padding", "export_nir", "import_nir", "is_passthrough_pool",
    "model_to_nir", "nir_to_model", "nudged", "read_neuron", "read_nir", "write_nir",
]
