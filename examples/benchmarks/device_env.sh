# Sourced by the GPU check scripts, from the repository root: on a lent GPU machine (LOCAL unset) the packages it
# lacks are installed from the wheels carried in .whl/ (gpu_checks.sh's header lists them) and the repository is put
# on the path; LOCAL=1 uses this machine's environment (a dry run on a CPU).
if [ -z "$LOCAL" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
