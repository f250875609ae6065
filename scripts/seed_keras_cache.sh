#!/usr/bin/env bash
# Offline machines cannot download the ImageNet weights Keras asks for. Copy the file from
# ../shared/weights (or $WASTESORT_WEIGHTS_DIR) into the Keras cache, where
# MobileNetV2(weights="imagenet") looks first. With a network, Keras downloads it itself.
set -euo pipefail
name=mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5
src_dir=${WASTESORT_WEIGHTS_DIR:-"$(cd "$(dirname "$0")/.." && pwd)/../shared/weights"}
dest_dir="${KERAS_HOME:-$HOME/.keras}/models"
if [ -f "$dest_dir/$name" ]; then
  echo "keras cache: $dest_dir/$name already present"
elif [ -f "$src_dir/$name" ]; then
  mkdir -p "$dest_dir"
  cp "$src_dir/$name" "$dest_dir/$name"
  echo "keras cache: seeded $dest_dir/$name from $src_dir"
else
  echo "keras cache: $name not found in $src_dir; Keras will try to download it on first use"
fi
