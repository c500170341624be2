# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The role's systemd unit template, rendered by Ansible, read back as systemd reads it.

Issue 10 finding 8: a livepatch_stack_dir with a space (or a quote, %, $ or backslash) must reach
the restore script as one argument. The reading side below is written from systemd.syntax(7)
("Quoting") and systemd.service(5) ("Command lines": specifiers with %, variables with $), not
from the template.
"""

from __future__ import annotations

import os

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLE = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'roles', 'livepatch_stack')
TEMPLATE = os.path.abspath(os.path.join(ROLE, 'templates', 'kernelops-livepatch-restore.service.j2'))
SCRIPT_DIR = '/usr/local/libexec/kernelops-livepatch'


def systemd_words(line, exec_line):
    """Split a unit file value into words as systemd does: quotes, backslash escapes, %%, and $$ in Exec lines."""
    words, word, quote, i, in_word = [], [], None, 0, False
    while i < len(line):
        char = line[i]
        if quote is None and char.isspace():
            if in_word:
                words.append(''.join(word))
                word, in_word = [], False
        elif quote is None and char in '"\'':
            quote, in_word = char, True
        elif char == quote:
            quote = None
        elif char == '\\' and i + 1 < len(line):
            i += 1
            word.append(line[i])
            in_word = True
        elif char == '%':
            if line[i + 1:i + 2] != '%':
                raise ValueError('unescaped specifier in %r' % line)
            word.append('%')
            i += 1
            in_word = True
        elif char == '$' and exec_line:
            if line[i + 1:i + 2] != '$':
                raise ValueError('unescaped variable in %r' % line)
            word.append('$')
            i += 1
            in_word = True
        else:
            word.append(char)
            in_word = True
        i += 1
    if quote is not None:
        raise ValueError('unterminated quote in %r' % line)
    if in_word:
        words.append(''.join(word))
    return words


def render(directory, python='/usr/bin/python3'):
    """The unit as Ansible's templar renders it (in process: the template module uses the same templar)."""
    variables = {
        'livepatch_stack_dir': directory, 'livepatch_stack_python': python, 'livepatch_stack_timeout': '60',
        '__livepatch_stack_script_dir': SCRIPT_DIR, '__livepatch_stack_script': SCRIPT_DIR + '/livepatch_restore.py',
        '__livepatch_stack_skip_switch': 'kernelops.livepatch=0', 'ansible_managed': 'Ansible managed',
    }
    with open(TEMPLATE, encoding='utf-8') as handle:
        text = Templar(loader=DataLoader(), variables=variables).template(trust_as_template(handle.read()))
    values = {}
    for line in text.splitlines():
        if '=' in line and not line.startswith('#'):
            key, value = line.split('=', 1)
            values[key] = value
    return values


@pytest.mark.parametrize('directory', [
    '/var/lib/kernelops-livepatch',
    '/srv/live patches',
    '/srv/a "quoted" dir',
    '/srv/100%/$HOME/back\\slash',
])
def test_directory_stays_one_argument(directory):
    unit = render(directory)
    argv = systemd_words(unit['ExecStart'], exec_line=True)
    assert argv == ['/usr/bin/python3', SCRIPT_DIR + '/livepatch_restore.py', '--dir', directory, '--timeout', '60.0']
    assert systemd_words(unit['RequiresMountsFor'], exec_line=False) == [directory, SCRIPT_DIR]


def test_documentation_is_not_a_placeholder():
    unit = render('/var/lib/kernelops-livepatch')
    # The script the unit runs documents it (skip switch, recovery); it is on the host with the unit.
    assert unit['Documentation'] == 'file:' + SCRIPT_DIR + '/livepatch_restore.py'
