#!/usr/bin/env bash
# Stage what ../shared/gpu-host/prepare.sh leaves out, for an offline GPU host (Python 3.12, x86-64): zarr's msgspec
# and the `compare` extra (ultralytics/yolov5 7.0.14 and what its loader imports), as one piece .dw/x00/extra.tar
# (~53 MB; send it like the DALI pieces, with carry [".dw/x00"]). Run from the project root on a machine with PyPI.
set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/extra"
pkgs=(msgspec yolov5==7.0.14 ultralytics==8.4.190 ultralytics-thop thop pandas seaborn psutil requests certifi
      charset_normalizer idna urllib3 "setuptools<81" python-dateutil six tzdata scipy gitpython gitdb smmap)
for p in "${pkgs[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d "$work/extra" "$p" 2>/dev/null || echo "gpu_extras: could not fetch $p (skipped)" >&2
done
mkdir -p .dw/x00
tar -C "$work" -cf .dw/x00/extra.tar extra
echo "gpu_extras: .dw/x00/extra.tar ($(du -h .dw/x00/extra.tar | cut -f1)); on the host: source tools/gpu_host.sh"
