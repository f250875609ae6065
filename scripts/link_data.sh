#!/usr/bin/env bash
# The default data: params.yaml's data.path is data/raw. Where it is missing and TrashNet is
# beside the repo (../shared/data/trashnet, or $WASTESORT_DATA), link it there: a symbolic link
# costs no copy, DVC hashes what it points to, and the pipeline never writes into data.path.
# Without either, data/raw is made empty, so that `dvc repro` reaches `validate`, which stops
# in one line saying how to get photos.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${WASTESORT_DATA:-../shared/data/trashnet}
[ -d data/raw ] && [ ! -L data/raw ] && rmdir data/raw 2>/dev/null || true  # an empty one: ours
if [ -e data/raw ] || [ -L data/raw ]; then
  echo "data: data/raw is there ($([ -L data/raw ] && echo "a link to $(readlink data/raw)" || echo "a folder"))"
elif [ -d "$src" ]; then
  mkdir -p data
  target=$(realpath --relative-to=data "$src")
  ln -s "$target" data/raw
  echo "data: data/raw -> $target (the default data.path)"
else
  mkdir -p data/raw
  echo "data: no $src; put one folder of photos per class in data/raw" \
    "(TrashNet: https://github.com/garythung/trashnet) or run with -S data.path=YOUR_FOLDER"
fi
