#!/usr/bin/env bash
# Creates the app venv (.docqa/venv) with docqa installed in editable mode, or refreshes it when
# pyproject.toml or deploy/constraints.txt changed. Everything after this step runs inside that
# venv.
set -euo pipefail
cd "$(dirname "$0")/.."
home="${DOCQA_HOME:-$PWD/.docqa}"
venv="$home/venv"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)'; then
  echo "docqa needs Python 3.11 or 3.12 (found: $("$python" --version 2>&1)); set PYTHON=..." >&2
  exit 1
fi
wanted="$(cat pyproject.toml deploy/constraints.txt deploy/bootstrap.sh | sha256sum | cut -d' ' -f1)"
stamp="$venv/.docqa-installed"
if [ ! -x "$venv/bin/python" ]; then
  echo "docqa: creating $venv"
  "$python" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]; then
  echo "docqa: installing docqa and its dependencies into $venv (about 2 minutes)"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  # the constraints pin every package to the versions the tests last passed with
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    -c deploy/constraints.txt -e ".[dev]"
  echo "$wanted" > "$stamp"
fi
