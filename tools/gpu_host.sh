# Source on the offline GPU host from the project root, after the DALI pieces are in /root/dw (see
# ../shared/gpu-host/README.md) and, for the YOLOv5 comparisons, .dw/x00/extra.tar was carried (tools/gpu_extras.sh):
#   source tools/gpu_host.sh && python3 benchmarks/gpu_suite.py --out $OUT --parts tests,check,loader,yolov5,...
# Installs into /tmp/site (once per machine) only the extras the host lacks; wheels are unpacked directly, since
# yolov5's wheel is tagged for Python <= 3.10 but runs on 3.12.
mkdir -p /root/dwx
[ -d /root/dwx/wheels ] || cat /root/dw/part-* | tar -x -C /root/dwx
[ -d /tmp/site/nvidia/dali ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
  /root/dwx/wheels/*.whl 2>&1 | tail -2
if [ -f .dw/x00/extra.tar ] && [ ! -d /root/dwe ]; then
  mkdir -p /root/dwe && tar -xf .dw/x00/extra.tar -C /root/dwe
  for w in /root/dwe/extra/*.whl; do
    n=$(basename "$w" | cut -d- -f1); m=$n
    case $n in setuptools) m=pkg_resources ;; python_dateutil) m=dateutil ;; gitpython) m=git ;; esac
    python3 -c "import $m" 2>/dev/null || python3 -m zipfile -e "$w" /tmp/site
  done
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
