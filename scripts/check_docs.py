# Copyright (c) kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Check that the collection documents every option and every RETURN key.

Reads what ``ansible-doc --json`` renders (doc fragments merged) for every
module and role of kernelops.livepatch and reports, per module:

* an option (at any depth, ``suboptions`` included) without a description;
* a top-level option that no task in EXAMPLES sets (its example);
* a missing or empty EXAMPLES block;
* a RETURN key (at any depth, ``contains`` included) without a description,
  or a leaf RETURN key without a ``sample`` (its example);

and, per role entry point, an option (at any depth) without a description.

The collection must be findable by ansible-doc (scripts/test sets
ANSIBLE_COLLECTIONS_PATH). Exit status 1 if anything is missing or if the
collection has no module at all (a check with nothing to check must not pass).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import typing as t

COLLECTION = "kernelops.livepatch"


def ansible_doc(*args: str) -> t.Any:
    """Run ansible-doc with --json and return the parsed output."""
    proc = subprocess.run(
        ["ansible-doc", "--json", *args],
        check=False,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit("ansible-doc %s failed (exit %d):\n%s" % (" ".join(args), proc.returncode, proc.stderr))
    return json.loads(proc.stdout or "{}")


def has_text(value: t.Any) -> bool:
    """Return whether a description is present and not blank."""
    if isinstance(value, list):
        return any(has_text(item) for item in value)
    return isinstance(value, str) and value.strip() != ""


def check_options(where: str, options: dict[str, t.Any] | None, prefix: str = "") -> list[str]:
    """Report options and suboptions without a description."""
    problems = []
    for name, spec in sorted((options or {}).items()):
        path = prefix + name
        if not has_text((spec or {}).get("description")):
            problems.append("%s: option %s has no description" % (where, path))
        problems.extend(check_options(where, (spec or {}).get("suboptions") or (spec or {}).get("options"), path + "."))
    return problems


def check_return(where: str, returns: dict[str, t.Any] | None, prefix: str = "") -> list[str]:
    """Report RETURN keys without a description, and leaves without a sample."""
    problems = []
    for name, spec in sorted((returns or {}).items()):
        spec = spec or {}
        path = prefix + name
        if not has_text(spec.get("description")):
            problems.append("%s: RETURN key %s has no description" % (where, path))
        contains = spec.get("contains")
        if contains:
            problems.extend(check_return(where, contains, path + "."))
        elif "sample" not in spec:
            problems.append("%s: RETURN key %s has no sample" % (where, path))
    return problems


def example_keys(examples: str) -> set[str]:
    """Return every YAML mapping key used in the EXAMPLES text."""
    return set(re.findall(r"^[\s-]*([A-Za-z_][A-Za-z0-9_]*):", examples, flags=re.M))


def check_module(name: str, entry: dict[str, t.Any]) -> list[str]:
    """Return the documentation problems of one module."""
    doc = entry.get("doc") or {}
    filename = doc.get("filename", "?")
    marker = "/ansible_collections/%s/" % COLLECTION.replace(".", "/")
    if marker in filename:
        filename = filename.split(marker, 1)[1]
    where = "%s (%s)" % (filename, name)
    problems = check_options(where, doc.get("options"))
    examples = entry.get("examples") or ""
    if not examples.strip():
        problems.append("%s: no EXAMPLES" % where)
    else:
        used = example_keys(examples)
        for option, spec in sorted((doc.get("options") or {}).items()):
            names = {option, *((spec or {}).get("aliases") or [])}
            if not names & used:
                problems.append("%s: option %s appears in no task of EXAMPLES" % (where, option))
    if not entry.get("return"):
        problems.append("%s: no RETURN" % where)
    problems.extend(check_return(where, entry.get("return")))
    return problems


def main() -> int:
    """Check every module and role of the collection."""
    modules = sorted(ansible_doc("-t", "module", "--list", COLLECTION))
    roles = sorted(ansible_doc("-t", "role", "--list", COLLECTION))
    problems: list[str] = []
    if not modules:
        problems.append("%s: ansible-doc finds no module (is ANSIBLE_COLLECTIONS_PATH set?)" % COLLECTION)
    if modules:
        for name, entry in sorted(ansible_doc("-t", "module", *modules).items()):
            problems.extend(check_module(name, entry))
    for role in roles:
        for role_name, entry in ansible_doc("-t", "role", role).items():
            for entry_point, spec in sorted((entry.get("entry_points") or {}).items()):
                where = "%s entry point %s (roles/%s/meta/argument_specs.yml)" % (
                    role_name, entry_point, role_name.rsplit(".", 1)[-1])
                if not has_text(spec.get("short_description")) and not has_text(spec.get("description")):
                    problems.append("%s: no description" % where)
                problems.extend(check_options(where, spec.get("options")))
    for problem in problems:
        print(problem)
    print("check_docs: %d module(s), %d role(s), %d problem(s)" % (len(modules), len(roles), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
