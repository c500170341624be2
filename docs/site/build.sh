#!/usr/bin/env bash
# Copyright (c) Ansible Project
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Created with antsibull-docs 2.28.0 (sphinx-init), adapted for kernelops.livepatch:
# builds offline into <repo>/built-docs/html, fails on any Sphinx warning (-W).
# Needs antsibull-docs and Sphinx on PATH (scripts/setup-venv installs them) and
# the collection findable as kernelops.livepatch (scripts/test sets
# ANSIBLE_COLLECTIONS_PATH).

set -euo pipefail

site=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd -- "$site/../.." && pwd)
out="${1:-$repo/built-docs}"
cd "$site"

# Create collection documentation. The generated rst goes below the output
# directory (git-ignored), not into the checkout.
rst="$out/rst"
mkdir -p "$rst"
chmod og-w "$rst"  # antsibull-docs wants that directory only readable by itself
antsibull-docs \
    --config-file antsibull-docs.cfg \
    collection \
    --cleanup everything \
    --fail-on-error \
    --use-current \
    --squash-hierarchy \
    --dest-dir "$rst" \
    kernelops.livepatch

# Pictures of real plans, drawn by the collection's planner (the guides include them)
python3 "$site/diagrams/plan_diagram.py" "$rst/diagrams"

# Screenshots the guides include (../images/NAME from docs/docsite/rst/, as in the checkout)
mkdir -p "$rst/images"
cp "$repo"/docs/docsite/images/*.png "$rst/images/"

# Build Sphinx site
sphinx-build -M html "$rst" "$out" -c . -W --keep-going -q
printf 'docs built: %s/html/index.html\n' "$out"
