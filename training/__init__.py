"""The dense PyTorch trainer of evsim (imports torch; the engine never imports this package).

- :mod:`evsim.training.neurons`: the neuron recurrences as autograd Functions (paper eq. 22).
- :mod:`evsim.training.network`: SpikingNetwork built from an evsim graph, ``dense_forward``,
  model export (``save_trained``/``load_trained``).
- :mod:`evsim.training.architectures`: the paper's LeNet, VGG7/9 and ResNet7/9/11 graphs.
- :mod:`evsim.training.trainer`: the loop (inputs come from :mod:`evsim.datasets.samples`).
"""

from evsim.training.architectures import ARCHITECTURES, build
from evsim.training.network import SpikingNetwork, dense_forward, load_trained, parameter_count, save_trained

__all__ = ["ARCHITECTURES", "SpikingNetwork", "build", "dense_forward", "load_trained", "parameter_count", "save_trained"]
