"""Training: what turns cached activations into the saved model.

- ``fitting``: the one training loop (``fit``), the fine-tuning phase and the head, class
  weights, the temperature folded into the head;
- ``distribute``: where training runs (one device, ``MirroredStrategy``,
  ``MultiWorkerMirroredStrategy``), mixed precision.

Imports point down only: these modules use ``wastesort.model``, ``calibration``, ``features``,
``config`` and ``stage`` (to load TensorFlow); only the training stages import them.
"""
