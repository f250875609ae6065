"""wastesort: waste photos in, gated and served classifier out."""

import os

# TensorFlow's Linux wheels turn their oneDNN kernels on by default only on CPUs with AVX512_VNNI,
# AVX512_BF16, AVX_VNNI or AMX. Elsewhere (an AVX2-only AMD EPYC or Intel Xeon) they fall back to
# Eigen kernels that fine-tune MobileNetV2 about a third as fast as oneDNN's AVX2 ones
# (benchmarks/onednn.py, BENCHMARKS.md). Set here, before any wastesort module imports
# TensorFlow, so every stage, test and tool trains with oneDNN; a TF_ENABLE_ONEDNN_OPTS already in
# the environment (0 to turn it off) wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
