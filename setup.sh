#!/usr/bin/env bash
# Sourced by main.sh and test.sh: create .venv once, install the dependencies, activate it.
# `source setup.sh dev` also installs the test dependencies.
python3 -m venv .venv 2>/dev/null || python3 -m venv --without-pip .venv
source .venv/bin/activate
stamp=".venv/.installed-$(cat requirements.txt ${1:+requirements-dev.txt} | sha256sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    # torch first: on a machine without CUDA the pinned CPU wheel is small; with torch already there, skip it
    # the stamp is written only when every install succeeded, so a failed one is retried next time
    { python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"; } &&
        python -m pip install -q -r requirements.txt ${1:+-r requirements-dev.txt} &&
        touch "$stamp"
fi
