# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs in lab guests booted for the tests (``pycache=True``), never on a managed host: a bytecode
cache for the sources Python imports from AnsiballZ payload zips.

Why: every module Ansible runs ships as a zip of sources (``ansible_<module>_payload.zip``), and
``zipimport`` never caches bytecode; worse, its ``find_spec`` compiles each module once just to
learn its file name (``spec_from_loader`` asks the loader for ``get_filename``, which compiles), and
``exec_module`` compiles it again. Under TCG that is 2-3 s of every module start. Here the spec is
built without compiling, and the code of each source is compiled once per guest and kept under
``CACHE`` by the digest of (bytecode magic, module name, source): the same source gives the same
code object Python would have compiled, so what runs is unchanged; only the compile is skipped.

Installed by the lab as ``GUEST_NAME`` with a ``.pth`` line that imports it at every Python start;
it installs its path hook only when ``CACHE`` exists (the lab creates it for test guests only: the benchmarks boot
without it and measure real starts). Standard library only; the guest's Python (>= 3.9).
"""

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import marshal
import os
import sys
import types
import zipimport

CACHE = '/var/cache/kernelops-lab-pycache'
GUEST_NAME = 'kernelops_lab_payload_bytecode'  # its name in the guest, imported by a .pth line
MARKER = '_payload.zip'  # AnsiballZ: <tmp>/ansible_<module>_payload.zip


def _with_filename(code, filename):
    """``code`` and every code object in it with ``co_filename`` = ``filename`` (tracebacks name
    this run's zip, not the one the code was first compiled from)."""
    consts = tuple(_with_filename(const, filename) if isinstance(const, types.CodeType) else const
                   for const in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


class PayloadLoader(importlib.abc.InspectLoader):
    """Loads one module of a payload zip: its source from ``zipimporter``, its code from the cache
    (``InspectLoader.exec_module`` runs ``get_code``)."""

    def __init__(self, zipped, origin):
        self.zipped = zipped
        self.origin = origin

    def get_filename(self, fullname):  # pylint: disable=unused-argument
        return self.origin

    def get_source(self, fullname):
        return self.zipped.get_source(fullname)

    def is_package(self, fullname):
        return self.zipped.is_package(fullname)

    def get_data(self, path):
        return self.zipped.get_data(path)

    def get_resource_reader(self, fullname):
        return self.zipped.get_resource_reader(fullname)

    def get_code(self, fullname):
        source = self.get_source(fullname)
        if source is None:  # bytecode only: zipimport's own
            return self.zipped.get_code(fullname)
        key = (importlib.util.MAGIC_NUMBER, fullname.encode('utf-8'), source.encode('utf-8', 'surrogateescape'))
        digest = hashlib.sha256(b'\0'.join(key)).hexdigest()
        path = os.path.join(CACHE, digest)
        try:
            with open(path, 'rb') as handle:
                code = marshal.loads(handle.read())
        except (OSError, EOFError, ValueError, TypeError):
            code = None
        if isinstance(code, types.CodeType):
            return code if code.co_filename == self.origin else _with_filename(code, self.origin)
        code = compile(source, self.origin, 'exec', dont_inherit=True)
        partial = '%s.%d' % (path, os.getpid())
        try:
            with open(partial, 'wb') as handle:
                handle.write(marshal.dumps(code))
            os.replace(partial, path)  # whole or absent: another Python may read it meanwhile
        except OSError:
            pass
        return code


class PayloadFinder:
    """The path-entry finder of one payload zip (or a package directory in it)."""

    def __init__(self, zipped):
        self.zipped = zipped

    def find_spec(self, fullname, target=None):
        try:
            package = self.zipped.is_package(fullname)
        except zipimport.ZipImportError:  # not in this zip, or a namespace portion: zipimport's answer
            return self.zipped.find_spec(fullname, target)
        inside = self.zipped.prefix + fullname.rpartition('.')[2]
        origin = os.path.join(self.zipped.archive, inside + ('/__init__.py' if package else '.py'))
        spec = importlib.machinery.ModuleSpec(fullname, PayloadLoader(self.zipped, origin), origin=origin,
                                              is_package=package)
        spec.has_location = True
        if package:
            spec.submodule_search_locations = [os.path.join(self.zipped.archive, inside)]
        return spec

    def invalidate_caches(self):
        self.zipped.invalidate_caches()


def path_hook(entry):
    """``sys.path_hooks`` entry: payload zips (and paths inside them) only."""
    if MARKER not in entry:
        raise ImportError('not an AnsiballZ payload')
    return PayloadFinder(zipimport.zipimporter(entry))


def install():
    if os.path.isdir(CACHE) and path_hook not in sys.path_hooks:
        sys.path_hooks.insert(0, path_hook)
        sys.path_importer_cache.clear()


if __name__ == GUEST_NAME:
    install()
