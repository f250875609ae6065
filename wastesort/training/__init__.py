"""Training: what turns cached activations into the saved model.

- ``recipe``: the model's one training recipe (warm-up head, fine-tuned backbone, final head,
  calibration), what the `train` stage runs;
- ``fitting``: the one training loop (``fit``), the fine-tuning phase and the head, class
  weights, the temperature folded into the head;
- ``distribute``: where training runs (one device, ``MirroredStrategy``,
  ``MultiWorkerMirroredStrategy``), mixed precision.

Imports point down only: these modules use ``wastesort.model``, ``calibration``, ``features``,
``config`` and ``stage`` (to load TensorFlow); only the `train` stage imports them.
"""
