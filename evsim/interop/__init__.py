"""Models from and to other simulators: NIR, the Neuromorphic Intermediate Representation (nir/).

This layer sits above evsim.model (it builds Graphs and weights) and below the engine, whose
``evsim.load`` reads ``.nir`` files through it. It needs h5py (the ``nir`` extra), imported only
when a NIR file is read or written.
"""
