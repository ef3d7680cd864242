#!/usr/bin/env bash
# Wheels the GPU check needs beyond a CUDA torch + transformers image (pydantic and the
# pure-Python packages it needs: pydantic-core imports typing_extensions.Sentinel, so an image's
# older typing_extensions is replaced too), for Python 3.12 on x86-64 Linux, into DIR. Run where pip reaches PyPI; carry DIR
# to the GPU machine and run `bash benchmarks/gpu_check.sh --wheels DIR` there.
#   bash scripts/gpu_wheels.sh .whl [PYTHON_VERSION]
set -euo pipefail
dir=${1:?usage: gpu_wheels.sh DIR [PYTHON_VERSION]}
version=${2:-3.12}
read -ra pins <<< "$("${PY:-.venv/bin/python}" - <<'PY'
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in
      ("pydantic", "pydantic-core", "annotated-types", "typing-inspection",
       "typing-extensions")))
PY
)"
"${PY:-.venv/bin/python}" -m pip download -q --no-deps --only-binary=:all: --python-version "$version" \
  --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dir" "${pins[@]}"
ls "$dir"
