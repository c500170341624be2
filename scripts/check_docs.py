# Copyright (c) kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Check that the collection documents every option, every RETURN key and every rule.

**Rules.** Scans the Python code under ``plugins/`` with :mod:`ast` for every rule name a
module can return and compares them with the rule table of
``docs/docsite/rst/workflows.rst`` (the ``list-table`` whose first header cell is ``rule``):
a rule the code can return and the table does not list is a problem, and so is a row for a
rule no code returns. A rule is found where it is

* the ``rule`` argument of :class:`LivepatchError`, of any class derived from it or aliased to
  it (``Refusal = LivepatchError``, ``import ... as``), or of any class or function that
  forwards one of its parameters into such a place (``def refuse(rule, ...)``), positional or
  ``rule=`` keyword, and the default value of such a parameter;
* the value of a ``rule=`` keyword of any call (``fail_json(rule=...)``, ``self.fail(rule=...)``),
  of a ``'rule'`` key in a dict literal, or of ``result['rule'] = ...``;

written as a string literal, a module-level constant (also through ``module.NAME``), a local
variable assigned from those, a conditional expression of those, or an element of a
module-level dict/list/tuple constant. ``x.rule`` (passing an error's rule on) is accepted. An
expression the scanner cannot resolve is reported, so that no rule escapes the table.

**Citations.** Every ``docs/developer.md §N`` (or ``§N.M``, ``§8 rule N``) cited in a file git
tracks names a section (or rule) that ``docs/developer.md`` has, and no tracked file cites the
research notes that live outside the repository (a clone or the tarball could not follow them).

**Options and RETURN keys.** Reads what ``ansible-doc --json`` renders (doc fragments merged) for every
module and role of kernelops.livepatch and reports, per module:

* an option (at any depth, ``suboptions`` included) without a description;
* a top-level option that no task in EXAMPLES sets (its example);
* a missing or empty EXAMPLES block;
* a RETURN key (at any depth, ``contains`` included) without a description,
  or a leaf RETURN key without a ``sample`` (its example); a top-level key whose description is
  only ``As RV(kernelops.livepatch.OTHER#module:KEY)...`` (a key described once, in OTHER) takes
  its sample from there, so OTHER must document KEY with a sample (or ``contains``) and the same
  ``type``;

and, per role entry point, an option (at any depth) without a description.

The collection must be findable by ansible-doc (scripts/test sets
ANSIBLE_COLLECTIONS_PATH). Exit status 1 if anything is missing or if the
collection has no module at all (a check with nothing to check must not pass).
``--rules`` runs only the rule and citation checks (no ansible-doc needed).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import typing as t

COLLECTION = "kernelops.livepatch"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULE_TABLE = os.path.join("docs", "docsite", "rst", "workflows.rst")
DEVELOPER = os.path.join("docs", "developer.md")
# Notes outside the repository that earlier sessions cited; their facts are in docs/developer.md.
# Written in pieces, so that this file does not name them itself and needs no exemption.
OUTSIDE = re.compile(r"livepatch-kernel" + r"\.md|lab-notes" + r"\.md|shared/" + r"research")
# The one error type (plugins/module_utils/_errors.py): LivepatchError(rule, message, ...).
ERROR_BASE = "LivepatchError"


# --- rules the code can return ----------------------------------------------------------------

class _Carrier(t.NamedTuple):
    """A class or function whose parameter ``keyword``, at ``index`` (without self), is a rule."""

    index: int
    keyword: str


def _callee(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _params(func: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> tuple[list[str], dict[str, ast.expr]]:
    """Positional parameter names (without self/cls of a method) and the defaults by name."""
    args = func.args
    positional = [a.arg for a in args.posonlyargs + args.args]
    defaults = dict(zip(positional[len(positional) - len(args.defaults):], args.defaults))
    defaults.update((a.arg, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None)
    if method and positional and positional[0] in ("self", "cls"):
        positional = positional[1:]
    names = positional + [a.arg for a in args.kwonlyargs]
    return names, defaults


class _File(t.NamedTuple):
    path: str
    tree: ast.Module
    constants: dict[str, list[str]]
    aliases: dict[str, str]


def _literal_strings(node: ast.expr) -> list[str] | None:
    """The strings of a literal str, or of a dict (values)/list/tuple/set literal of str."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Dict):
        values = node.values
    elif isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        values = node.elts
    else:
        return None
    found = [v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    return found or None


def _load(path: str, text: str) -> _File:
    tree = ast.parse(text, filename=path)
    constants: dict[str, list[str]] = {}
    aliases: dict[str, str] = {}
    for node in tree.body:
        targets: list[ast.expr] = []
        value = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
        for target in targets:
            if not isinstance(target, ast.Name) or value is None:
                continue
            strings = _literal_strings(value)
            if strings is not None:
                constants[target.id] = strings
            elif isinstance(value, (ast.Name, ast.Attribute)):
                aliases[target.id] = _callee(value) or ""
    return _File(path, tree, constants, aliases)


class RuleScan:
    """Every rule name found in a set of Python sources, and what could not be resolved."""

    def __init__(self, sources: t.Mapping[str, str]) -> None:
        self.files = [_load(path, text) for path, text in sorted(sources.items())]
        self.rules: dict[str, list[str]] = {}
        self.problems: list[str] = []
        self.carriers: dict[str, _Carrier] = {ERROR_BASE: _Carrier(0, "rule")}
        self._owner: dict[ast.AST, ast.ClassDef] = {}  # a call in a constructor -> its class
        self._find_carriers()
        for file in self.files:
            self._scan(file)

    # which callables take a rule
    def _find_carriers(self) -> None:
        classes: dict[str, tuple[list[str], ast.FunctionDef | None]] = {}
        for file in self.files:
            for node in ast.walk(file.tree):
                if isinstance(node, ast.ClassDef):
                    init = next((item for item in node.body if isinstance(item, ast.FunctionDef)
                                 and item.name == "__init__"), None)
                    classes[node.name] = ([_callee(b) or "" for b in node.bases], init)
                    if init is not None:
                        self._owner.update((call, node) for call in ast.walk(init) if isinstance(call, ast.Call))
        changed = True
        while changed:  # to a fixed point: subclasses, aliases, forwarding functions
            changed = False
            for name, (bases, init) in classes.items():
                if name in self.carriers:
                    continue
                carrier = None
                if init is None:  # the constructor of the first base that takes a rule
                    carrier = next((self.carriers[b] for b in bases if b in self.carriers), None)
                else:
                    carrier = self._forwarded(init, method=True)
                if carrier is not None:
                    self.carriers[name] = carrier
                    changed = True
            for file in self.files:
                for alias, target in file.aliases.items():
                    if target in self.carriers and alias not in self.carriers:
                        self.carriers[alias] = self.carriers[target]
                        changed = True
                for func, method in self._functions(file.tree):
                    if func.name not in self.carriers:
                        carrier = self._forwarded(func, method)
                        if carrier is not None:
                            self.carriers[func.name] = carrier
                            changed = True

    def _forwarded(self, func: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> _Carrier | None:
        """The carrier a function is if it takes ``rule`` or passes one of its parameters on as a rule."""
        names, _defaults = _params(func, method)
        if "rule" in names:
            return _Carrier(names.index("rule"), "rule")
        for call in ast.walk(func):
            expr = self._rule_argument(call) if isinstance(call, ast.Call) else None
            if isinstance(expr, ast.Name) and expr.id in names:
                return _Carrier(names.index(expr.id), expr.id)
        return None

    @staticmethod
    def _functions(tree: ast.Module) -> t.Iterator[tuple[ast.FunctionDef | ast.AsyncFunctionDef, bool]]:
        """Every function but ``__init__`` (a class's constructor), and whether it is a method."""
        for node in ast.walk(tree):
            for item in ast.iter_child_nodes(node):
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name != "__init__":
                    yield item, isinstance(node, ast.ClassDef)

    def _rule_argument(self, call: ast.Call) -> ast.expr | None:
        """The expression this call passes as a rule, if the callee takes one."""
        for keyword in call.keywords:
            if keyword.arg == "rule":
                return keyword.value
        name, shift = _callee(call.func) or "", 0
        if name == "__init__" and isinstance(call.func, ast.Attribute):
            # super().__init__(rule, ...) or Base.__init__(self, rule, ...) in a constructor
            base = call.func.value
            if isinstance(base, ast.Call) and _callee(base.func) == "super":
                owner = self._owner.get(call)
                name = next((b for b in ([_callee(x) or "" for x in owner.bases] if owner else [])
                             if b in self.carriers), "")
            else:
                name, shift = _callee(base) or "", 1
        carrier = self.carriers.get(name)
        if carrier is None:
            return None
        for keyword in call.keywords:
            if keyword.arg == carrier.keyword:
                return keyword.value
        if carrier.index + shift < len(call.args):
            return call.args[carrier.index + shift]  # a *args here is reported as unresolvable
        return None  # the default: found at the def

    # what a rule expression can be
    def _scan(self, file: _File) -> None:
        parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(file.tree):
            for child in ast.iter_child_nodes(node):
                parents[child] = node
        for node in ast.walk(file.tree):
            exprs: list[ast.expr] = []
            if isinstance(node, ast.Call):
                expr = self._rule_argument(node)
                if expr is not None:
                    exprs.append(expr)
            elif isinstance(node, ast.Dict):
                exprs.extend(v for k, v in zip(node.keys, node.values)
                             if isinstance(k, ast.Constant) and k.value == "rule")
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if (isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant)
                            and target.slice.value == "rule"):
                        exprs.append(node.value)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                # the default of a rule parameter is returned when a caller passes none
                _names, defaults = _params(node, method=False)
                carrier = self.carriers.get(node.name)
                keywords = {"rule", carrier.keyword} if carrier else {"rule"}
                exprs.extend(defaults[k] for k in sorted(keywords) if k in defaults)
            for expr in exprs:
                where = "%s:%d" % (file.path, getattr(expr, "lineno", getattr(node, "lineno", 0)))
                self._resolve(file, expr, where, self._enclosing(node, parents), 0)

    @staticmethod
    def _enclosing(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> ast.AST | None:
        while node in parents:
            node = parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return node
        return None

    def _constant(self, file: _File, name: str) -> list[str] | None:
        if name in file.constants:
            return file.constants[name]
        name = file.aliases.get(name, name)
        found = [f.constants[name] for f in self.files if name in f.constants]
        return [s for strings in found for s in strings] if found else None

    def _resolve(self, file: _File, expr: ast.expr, where: str, scope: ast.AST | None, depth: int) -> None:
        strings: list[str] | None = None
        if isinstance(expr, ast.Constant) and expr.value in (None, ""):
            return  # "no rule" is not a rule
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            strings = [expr.value]
        elif isinstance(expr, ast.IfExp):
            self._resolve(file, expr.body, where, scope, depth + 1)
            self._resolve(file, expr.orelse, where, scope, depth + 1)
            return
        elif isinstance(expr, ast.BoolOp):
            for value in expr.values:
                self._resolve(file, value, where, scope, depth + 1)
            return
        elif (isinstance(expr, ast.Attribute) and expr.attr == "rule") or self._reads_a_rule(expr):
            return  # a rule passed on (an error's, a result's): found where it was made
        elif isinstance(expr, ast.Call) and _callee(expr.func) == "str" and len(expr.args) == 1:
            self._resolve(file, expr.args[0], where, scope, depth + 1)
            return
        elif isinstance(expr, ast.Attribute):
            strings = self._constant(file, expr.attr)
        elif isinstance(expr, ast.Subscript) and isinstance(expr.value, (ast.Name, ast.Attribute)):
            strings = self._constant(file, _callee(expr.value) or "")
        elif (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr == "get"
              and isinstance(expr.func.value, (ast.Name, ast.Attribute))):
            strings = self._constant(file, _callee(expr.func.value) or "")
            if strings is not None and len(expr.args) > 1:
                self._resolve(file, expr.args[1], where, scope, depth + 1)
        elif isinstance(expr, ast.Name):
            local = self._local_values(expr.id, scope)
            if local is not None and depth < 8:
                for value in local:
                    self._resolve(file, value, where, scope, depth + 1)
                return
            if scope is not None and isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
                carrier = self.carriers.get(scope.name)
                if carrier is not None and carrier.keyword == expr.id:
                    return  # forwarded: resolved at the calls of this function
            strings = self._constant(file, expr.id)
        if strings is None:
            self.problems.append("%s: cannot tell which rule %s is; use a string literal or a module-level "
                                 "constant" % (where, ast.unparse(expr)))
            return
        for value in strings:
            self.rules.setdefault(value, []).append(where)

    @staticmethod
    def _reads_a_rule(expr: ast.expr) -> bool:
        """``x['rule']``, ``facts.get('..._rule')``: a rule read from a result, not made here."""
        def names_a_rule(node: ast.expr | None) -> bool:
            return isinstance(node, ast.Constant) and isinstance(node.value, str) and "rule" in node.value

        if isinstance(expr, ast.Subscript):
            return names_a_rule(expr.slice)
        return isinstance(expr, ast.Call) and bool(expr.args) and names_a_rule(expr.args[0])

    @staticmethod
    def _local_values(name: str, scope: ast.AST | None) -> list[ast.expr] | None:
        if scope is None:
            return None
        values = [node.value for node in ast.walk(scope) if isinstance(node, ast.Assign)
                  and any(isinstance(target, ast.Name) and target.id == name for target in node.targets)]
        return values or None


def scan_rules(root: str = REPO) -> RuleScan:
    """Scan every Python file under ``root``/plugins."""
    sources = {}
    for directory, _dirs, names in os.walk(os.path.join(root, "plugins")):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                with open(path, encoding="utf-8") as handle:
                    sources[os.path.relpath(path, root)] = handle.read()
    return RuleScan(sources)


def table_rules(text: str) -> dict[str, int]:
    """The rules of the rule table: first cells of the ``list-table`` headed ``rule``, by line."""
    rules: dict[str, int] = {}
    lines = text.splitlines()
    for start, line in enumerate(lines):
        if line.strip() != ".. list-table::":
            continue
        rows = []
        for number in range(start + 1, len(lines)):
            row = lines[number]
            if row.strip() and not row.startswith((" ", "\t")):
                break
            match = re.match(r"\s*\* - (.*)$", row)
            if match:
                rows.append((number + 1, match.group(1)))
        if not rows or re.findall(r"``([^`]+)``", rows[0][1]) != ["rule"]:
            continue
        for number, cell in rows[1:]:
            for rule in re.findall(r"``([^`]+)``", cell):
                rules.setdefault(rule, number)
    return rules


def check_rules(root: str = REPO) -> list[str]:
    """Problems: rules the code returns that the table lacks, rows no code returns, unresolved rules."""
    scan = scan_rules(root)
    with open(os.path.join(root, RULE_TABLE), encoding="utf-8") as handle:
        documented = table_rules(handle.read())
    problems = list(scan.problems)
    if not documented:
        problems.append("%s: no rule table (a list-table whose first header cell is ``rule``)" % RULE_TABLE)
    for rule, places in sorted(scan.rules.items()):
        if rule not in documented:
            problems.append("rule %s (%s) is not in the rule table of %s" % (rule, ", ".join(sorted(set(places))), RULE_TABLE))
    for rule, line in sorted(documented.items()):
        if rule not in scan.rules:
            problems.append("%s:%d: rule %s is in the rule table, but no code under plugins/ returns it"
                            % (RULE_TABLE, line, rule))
    print("check_docs: %d rule(s) in the code, %d in the table" % (len(scan.rules), len(documented)))
    return problems


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


RETURN_REFERENCE = re.compile(r"^As RV\((%s\.[a-z_]+)#module:([a-z_]+)\)" % re.escape(COLLECTION))


def check_reference(where: str, path: str, spec: dict[str, t.Any], others: dict[str, t.Any]) -> list[str] | None:
    """For a key described only by reference to another module's RETURN key: its problems; None if it is no reference."""
    description = spec.get("description")
    first = description[0] if isinstance(description, list) and description else description
    match = RETURN_REFERENCE.match(first) if isinstance(first, str) else None
    if not match:
        return None
    module, key = match.groups()
    target = ((others.get(module) or {}).get("return") or {}).get(key)
    if not target:
        return ["%s: RETURN key %s refers to %s key %s, which is not documented" % (where, path, module, key)]
    if "sample" not in target and not target.get("contains"):
        return ["%s: RETURN key %s refers to %s key %s, which has no sample" % (where, path, module, key)]
    if (spec.get("type"), spec.get("elements")) != (target.get("type"), target.get("elements")):
        return ["%s: RETURN key %s is %s/%s, but %s key %s is %s/%s" % (
            where, path, spec.get("type"), spec.get("elements"), module, key, target.get("type"), target.get("elements"))]
    return []


def check_return(where: str, returns: dict[str, t.Any] | None, prefix: str = "",
                 others: dict[str, t.Any] | None = None) -> list[str]:
    """Report RETURN keys without a description, and leaves without a sample (or a reference, see above)."""
    problems = []
    for name, spec in sorted((returns or {}).items()):
        spec = spec or {}
        path = prefix + name
        if not has_text(spec.get("description")):
            problems.append("%s: RETURN key %s has no description" % (where, path))
        contains = spec.get("contains")
        reference = check_reference(where, path, spec, others) if others is not None and not prefix else None
        if contains:
            problems.extend(check_return(where, contains, path + "."))
        elif reference is not None:
            problems.extend(reference)
        elif "sample" not in spec:
            problems.append("%s: RETURN key %s has no sample" % (where, path))
    return problems


def example_keys(examples: str) -> set[str]:
    """Return every YAML mapping key used in the EXAMPLES text."""
    return set(re.findall(r"^[\s-]*([A-Za-z_][A-Za-z0-9_]*):", examples, flags=re.M))


def check_module(name: str, entry: dict[str, t.Any], others: dict[str, t.Any] | None = None) -> list[str]:
    """Return the documentation problems of one module (others: every module's ansible-doc entry, by name)."""
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
            if option.startswith("_"):
                continue  # internal: set by the module's action plugin, never in a task
            if not names & used:
                problems.append("%s: option %s appears in no task of EXAMPLES" % (where, option))
    if not entry.get("return"):
        problems.append("%s: no RETURN" % where)
    problems.extend(check_return(where, entry.get("return"), others=others if others is not None else {name: entry}))
    return problems


# --- citations of docs/developer.md ----------------------------------------------------------

def developer_sections(text: str) -> tuple[set[str], set[int]]:
    """The section numbers (``"2"``, ``"2.1"``) and the rule numbers of §8 in docs/developer.md."""
    sections = set(re.findall(r"^#{2,3} §(\d+(?:\.\d+)?)\b", text, flags=re.M))
    rules = {int(n) for n in re.findall(r'<a id="s8-rule-(\d+)"></a>', text)}
    return sections, rules


def _cited(tail: str) -> tuple[list[str], list[int]]:
    """The sections and §8 rules cited in the text right after ``developer.md``.

    Stops at the next file name (``livepatch.rst §3`` cites another document) and at a
    sentence end, so that only this citation is read.
    """
    tail = re.split(r"\b[\w-]+\.(?:rst|md|c|h|py|txt|yml)\b|[.;]\s|[.;]$", tail, maxsplit=1)[0]
    sections, rules = [], []
    for match in re.finditer(r"§(\d+(?:\.\d+)?)(?:\s*[-–]\s*§?(\d+(?:\.\d+)?))?"
                             r"((?:,?\s*rules?\s+\d+(?:\s*(?:-|–|,|and)\s*\d+)*)?)", tail):
        sections.extend(n for n in match.group(1, 2) if n)
        if match.group(3):
            numbers = [int(n) for n in re.findall(r"\d+", match.group(3))]
            if re.search(r"\d\s*[-–]\s*\d", match.group(3)) and len(numbers) == 2:
                numbers = list(range(numbers[0], numbers[1] + 1))
            rules.extend(numbers)
    return sections, rules


def _tracked_files(root: str) -> list[str]:
    proc = subprocess.run(["git", "-C", root, "ls-files", "-z"], check=False, capture_output=True)
    if proc.returncode == 0:
        return [name for name in proc.stdout.decode("utf-8", "replace").split("\0") if name]
    found = []
    for directory, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in (".git", ".venv", "built-docs", ".cache")]
        found.extend(os.path.relpath(os.path.join(directory, n), root) for n in names)
    return found


def check_citations(root: str = REPO) -> list[str]:
    """Problems: a citation of docs/developer.md that names a section or rule it does not have, or a
    citation of a note outside the repository."""
    with open(os.path.join(root, DEVELOPER), encoding="utf-8") as handle:
        sections, rules = developer_sections(handle.read())
    problems = []
    if not sections:
        problems.append("%s: no numbered sections found" % DEVELOPER)
    for name in sorted(_tracked_files(root)):
        path = os.path.join(root, name)
        if name == DEVELOPER or not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(lines, 1):
            outside = OUTSIDE.search(line)
            if outside:
                problems.append("%s:%d: cites %s, which is not in the repository; cite %s §N instead"
                                % (name, number, outside.group(0), DEVELOPER))
            for piece in line.split("developer.md")[1:]:
                cited_sections, cited_rules = _cited(piece)
                for section in cited_sections:
                    if section not in sections:
                        problems.append("%s:%d: cites %s §%s, which does not exist" % (name, number, DEVELOPER, section))
                for rule in cited_rules:
                    if rule not in rules:
                        problems.append("%s:%d: cites %s §8 rule %d, which does not exist" % (name, number, DEVELOPER, rule))
    return problems


def main(argv: list[str] | None = None) -> int:
    """Check the rule table, then every module and role of the collection."""
    argv = sys.argv[1:] if argv is None else argv
    problems = check_rules() + check_citations()
    if "--rules" in argv:
        for problem in problems:
            print(problem)
        return 1 if problems else 0
    modules = sorted(ansible_doc("-t", "module", "--list", COLLECTION))
    roles = sorted(ansible_doc("-t", "role", "--list", COLLECTION))
    if not modules:
        problems.append("%s: ansible-doc finds no module (is ANSIBLE_COLLECTIONS_PATH set?)" % COLLECTION)
    if modules:
        entries = ansible_doc("-t", "module", *modules)
        for name, entry in sorted(entries.items()):
            problems.extend(check_module(name, entry, entries))
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
