"""Training: what turns cached activations into the saved model.

- ``fitting``: the one training loop (``fit``), the fine-tuning phase and the head, class
  weights, the temperature folded into the head;
- ``distribute``: where training runs (one device, ``MirroredStrategy``,
  ``MultiWorkerMirroredStrategy``), mixed precision.

Imports point down only: these modules use ``wastesort.model``, ``calibration``, ``features`` and
``config``; the stages import them, and within ``wastesort`` only ``stage`` does (``distribute``,
to place a training stage).
"""
