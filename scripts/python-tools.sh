#!/usr/bin/env bash
# Installs the Python tools the tests use (kubernetes-validate, from PyPI) into the virtualenv
# $1, with the `python3` on PATH. A virtualenv because Debian's Python refuses `pip install`
# outside one (PEP 668) and the system's packages must stay untouched; the test suite checks
# this against a throwaway Python that refuses the same way.
set -euo pipefail
venv=${1:?usage: python-tools.sh VENV}
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
if "$venv/bin/python3" -c "import kubernetes_validate" >/dev/null 2>&1; then
    exit 0
fi
echo "==> installing kubernetes-validate (PyPI) into $venv"
python3 -m venv "$venv" 2>/dev/null || {
    # Debian ships venv's ensurepip separately.
    $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$venv"
}
"$venv/bin/python3" -m pip install --quiet --disable-pip-version-check kubernetes-validate
