"""Where the training stages run: the device they print, the `tf.distribute` strategy named in
``params.yaml`` (``distribute.strategy``) and mixed precision on GPUs.

``none`` trains on one device: the first GPU TensorFlow sees, else the CPU. ``mirrored`` keeps
one replica per local GPU and averages their gradients every step (``MirroredStrategy``); with
no GPU and ``logical_cpus`` > 1 it splits the CPU into that many devices, which is how the
tests prove that path on a laptop. ``multi_worker`` spans the machines named in ``TF_CONFIG``
(``MultiWorkerMirroredStrategy``; one worker without it). Batch sizes in params are global: a
step's batch is split across the replicas, so every strategy computes the same mean gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wastesort import config
from wastesort.stage import load_tensorflow

#: bfloat16 needs no loss scaling (so the weight EMA is kept as on float32); GPUs from compute
#: capability 8.0 (Ampere, Hopper) run it on their tensor cores.
BF16_MIN_CAPABILITY = (8, 0)


@dataclass
class Placement:
    strategy: Any  # a tf.distribute.Strategy
    description: str  # e.g. "CPU", "NVIDIA H100 80GB HBM3", "mirrored over 2 devices (...)"
    precision: str  # the Keras dtype policy: float32 or mixed_bfloat16


def setup(tf, cfg: dict[str, Any] | None) -> Placement:
    """The strategy and dtype policy for ``cfg`` (the ``distribute`` section; missing means
    one device, float32). Call it before anything runs on TensorFlow's devices."""
    import keras

    settings = config.typed("distribute", cfg or {})
    name, logical_cpus = settings.strategy, settings.logical_cpus
    gpus = tf.config.list_physical_devices("GPU")
    names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    if name == "none":
        strategy = tf.distribute.get_strategy()
        where = names[0] if names else "CPU"
    elif name == "mirrored":
        if not gpus and logical_cpus > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus
            )
            devices = [f"/cpu:{i}" for i in range(logical_cpus)]
            strategy = tf.distribute.MirroredStrategy(devices)
            where = f"mirrored over {logical_cpus} logical CPU devices"
        else:
            strategy = tf.distribute.MirroredStrategy()
            where = (
                f"mirrored over {len(gpus)} GPU(s): {', '.join(names)}"
                if gpus
                else "mirrored over 1 device: CPU"
            )
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        where = (
            f"multi_worker, {strategy.num_replicas_in_sync} replica(s) on this worker "
            f"({', '.join(names) or 'CPU'})"
        )
    precision = "float32"
    if settings.mixed_precision and gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
        if capability and tuple(capability) >= BF16_MIN_CAPABILITY:
            precision = "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(precision)
    return Placement(strategy, where, precision)


def place(name: str, params: dict, mixed_precision: bool = True) -> Placement:
    """For a training stage: TensorFlow loaded, the ``distribute`` section applied (strategy,
    and mixed precision unless ``mixed_precision`` is False) and the device printed."""
    tf = load_tensorflow()
    cfg = dict(params.get("distribute") or {})
    if not mixed_precision:
        cfg["mixed_precision"] = False
    placement = setup(tf, cfg)
    print(f"{name}: training on {placement.description} ({placement.precision})")
    return placement
