#!/usr/bin/env bash
# Build .gpu-kit/ (git-ignored): what tilepipe needs on a lent GPU machine beyond that machine's
# image, which holds Python 3.12, a CUDA torch, numpy, scipy, scikit-image, pandas, pyarrow,
# PyYAML and click but not GDAL's Python side. Run here, where pip reaches PyPI; the GPU machine
# reaches nothing. The wheels are the versions this checkout's .venv pins, for CPython 3.12 on
# x86-64, unpacked into site/ and packed as site.tar.xz (xz: the wheels' zip is ~80 MB, over
# what may travel with the working tree; xz of the unpacked tree is ~59 MB).
#
#   bash benchmarks/gpu/kit.sh        # then: the device tool's run, carry [".gpu-kit"],
#                                     #   command "bash benchmarks/gpu/run.sh"
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
KIT=${KIT:-.gpu-kit}
KIT_PYTHON=${KIT_PYTHON:-3.12}  # the GPU image's Python
# tilepipe's imports that the GPU image lacks, and what they import in turn (rasterio: affine,
# click-plugins, cligj; jsonschema: its specifications, referencing, rpds-py)
PACKAGES="affine click-plugins cligj jsonschema jsonschema-specifications pyogrio pyproj rasterio
referencing rpds-py shapely"
# what the GPU image already holds of what tilepipe's GPU steps import (tests/test_gpu_kit.py
# checks that the two lists together cover every import)
IMAGE_HAS="attrs certifi click numpy packaging pandas pyarrow pyyaml scikit-image scipy torch
tqdm typing-extensions lazy-loader charset-normalizer cloudpickle idna python-dateutil setuptools"
pattern="^($(echo $PACKAGES | tr ' ' '|'))=="
mapfile -t pins < <("$PY" -m pip freeze | grep -i -E "$pattern")
if [ "${#pins[@]}" -ne "$(echo $PACKAGES | wc -w)" ]; then
  echo "kit.sh: $PY lacks some of: $PACKAGES (found: ${pins[*]}); run 'make .venv/bin/.installed'" >&2
  exit 2
fi
rm -rf "$KIT"
mkdir -p "$KIT"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
         manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
"$PY" -m pip install --quiet --no-deps --no-compile --only-binary=:all: --python-version "$KIT_PYTHON" \
  --implementation cp "${platforms[@]}" --target "$KIT/site" "${pins[@]}"
tar -C "$KIT" -cJf "$KIT/site.tar.xz" site
rm -rf "$KIT/site"
git describe --always --dirty > "$KIT/commit"
echo "kit.sh: $KIT/site.tar.xz ($(du -m "$KIT/site.tar.xz" | cut -f1) MB), Python $KIT_PYTHON," \
  "at $(cat "$KIT/commit"): ${pins[*]}"
