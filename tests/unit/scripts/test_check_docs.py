# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The rule scanner of scripts/check_docs.py: which rules it finds in code, and the table check."""

from __future__ import annotations

import importlib.util
import os
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
_SPEC = importlib.util.spec_from_file_location('check_docs', os.path.join(REPO, 'scripts', 'check_docs.py'))
check_docs = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(check_docs)

ERRORS = '''
class LivepatchError(Exception):
    def __init__(self, rule, message, patches=(), detail=None):
        super().__init__(message)
'''


def scan(code, errors=ERRORS):
    sources = {'plugins/module_utils/_errors.py': textwrap.dedent(errors),
               'plugins/module_utils/_x.py': textwrap.dedent(code)}
    return check_docs.RuleScan(sources)


# code -> the exact set of rules the scanner must find there
CASES = [
    ('positional literal', "raise LivepatchError('lit', 'a message')", {'lit'}),
    ('keyword', "raise LivepatchError(message='m', rule='kw')", {'kw'}),
    ('subclass without a constructor',
     "class KoFileError(LivepatchError):\n    pass\nraise KoFileError('sub', 'm')", {'sub'}),
    ('subclass of a subclass',
     "class A(LivepatchError):\n    pass\nclass B(A):\n    pass\nraise B('deep', 'm')", {'deep'}),
    ('alias by assignment', "Refusal = LivepatchError\nraise Refusal('alias', 'm')", {'alias'}),
    ('alias by import', "from ._errors import LivepatchError as Oops\nraise Oops('imported', 'm')", {'imported'}),
    ('constructor with a fixed rule',
     "class LockError(LivepatchError):\n"
     "    def __init__(self, message):\n"
     "        super().__init__('lock_timeout', message)\n"
     "raise LockError('this is a message, not a rule')", {'lock_timeout'}),
    ('constructor calling the base by name',
     "class E(LivepatchError):\n"
     "    def __init__(self, message):\n"
     "        LivepatchError.__init__(self, 'by_name', message)\n"
     "raise E('m')", {'by_name'}),
    ('old argument order, rule third with a default',
     "class BadInput(Exception):\n"
     "    def __init__(self, message, patches=(), rule='bad_input'):\n"
     "        self.rule = rule\n"
     "raise BadInput('m', ['p'], 'missing_file')", {'bad_input', 'missing_file'}),
    ('module-level constant', "RULE = 'const'\nraise LivepatchError(RULE, 'm')", {'const'}),
    ('constant of another module', "from . import _y\nraise LivepatchError(_y.OTHER, 'm')", {'other'}),
    ('fail_json keyword', "module.fail_json(msg='m', rule='fj')", {'fj'}),
    ('fail keyword', "self.fail('m', rule='fl')", {'fl'}),
    ('result key', "result['rule'] = 'rk'", {'rk'}),
    ('dict literal', "out = {'msg': 'm', 'rule': 'dl'}", {'dl'}),
    ('forwarding function',
     "def refuse(rule, message):\n    raise LivepatchError(rule, message)\nrefuse('fw', 'm')", {'fw'}),
    ('forwarding method',
     "class R:\n"
     "    def stop(self, why, rule):\n"
     "        raise LivepatchError(rule, why)\n"
     "R().stop('m', 'meth')", {'meth'}),
    ('conditional expression', "raise LivepatchError('a' if x else 'b', 'm')", {'a', 'b'}),
    ('local variable',
     "def f(x):\n    rule = 'loc1'\n    if x:\n        rule = 'loc2'\n    raise LivepatchError(rule, 'm')",
     {'loc1', 'loc2'}),
    ('dict constant by errno', "BY_ERRNO = {'EBUSY': 'busy', 'EINVAL': 'invalid'}\n"
     "raise LivepatchError(BY_ERRNO[e], 'm')", {'busy', 'invalid'}),
    ('passing an error on', "module.fail_json(msg=exc.message, rule=exc.rule)", set()),
    ('no rule at all', "module.fail_json(msg='m', rule=None)", set()),
    ('a rule read from a result', "row = {'rule': str(facts.get('livepatch_stack_rule') or '')}\n"
     "out = {'rule': row['rule']}", set()),
    ('not an error', "print('not_a_rule', 'm')\nraise ValueError('nor_this')", set()),
]


@pytest.mark.parametrize('code, expected', [(c, e) for _n, c, e in CASES], ids=[n for n, _c, _e in CASES])
def test_scanner_finds_exactly_these_rules(code, expected):
    result = check_docs.RuleScan({
        'plugins/module_utils/_errors.py': ERRORS,
        'plugins/module_utils/_y.py': "OTHER = 'other'\n",
        'plugins/module_utils/_x.py': code,
    })
    assert set(result.rules) == expected
    assert result.problems == []


@pytest.mark.parametrize('code', [
    "raise LivepatchError(compute(), 'm')",
    "raise LivepatchError(*args)",
    "module.fail_json(msg='m', rule=UNKNOWN_NAME)",
])
def test_scanner_reports_what_it_cannot_resolve(code):
    result = scan(code)
    assert len(result.problems) == 1
    assert 'plugins/module_utils/_x.py:' in result.problems[0]


TABLE = '''
Some text with ``not_a_rule``.

.. list-table::
  :header-rows: 1

  * - option
    - ``also_not``

.. list-table::
  :header-rows: 1
  :widths: 26 74

  * - ``rule``
    - meaning and what to do
  * - ``one``
    - The first; mentions ``not_a_rule_either`` in the meaning.
  * - ``two``, ``three``
    - Two at once.

After the table.
'''


def test_table_rules_reads_first_cells_of_the_rule_table_only():
    assert set(check_docs.table_rules(TABLE)) == {'one', 'two', 'three'}


def make_repo(tmp_path, code, table):
    (tmp_path / 'plugins' / 'module_utils').mkdir(parents=True)
    (tmp_path / 'plugins' / 'module_utils' / '_errors.py').write_text(ERRORS)
    (tmp_path / 'plugins' / 'module_utils' / '_x.py').write_text(textwrap.dedent(code))
    rst = tmp_path / check_docs.RULE_TABLE
    rst.parent.mkdir(parents=True)
    rst.write_text(table)
    return str(tmp_path)


def test_check_rules_passes_when_code_and_table_agree(tmp_path):
    root = make_repo(tmp_path, "raise LivepatchError('one', 'm')\nraise LivepatchError('two', 'm')\n"
                               "module.fail_json(msg='m', rule='three')", TABLE)
    assert check_docs.check_rules(root) == []


def test_check_rules_fails_on_a_rule_missing_from_the_table(tmp_path):
    root = make_repo(tmp_path, "raise LivepatchError('one', 'm')\nraise LivepatchError('two', 'm')\n"
                               "module.fail_json(msg='m', rule='three')\nraise LivepatchError('four', 'm')", TABLE)
    problems = check_docs.check_rules(root)
    assert len(problems) == 1
    assert 'rule four' in problems[0] and 'not in the rule table' in problems[0]


def test_check_rules_fails_on_a_table_row_no_code_returns(tmp_path):
    root = make_repo(tmp_path, "raise LivepatchError('one', 'm')\nraise LivepatchError('two', 'm')", TABLE)
    problems = check_docs.check_rules(root)
    assert len(problems) == 1
    assert 'rule three' in problems[0] and 'no code' in problems[0]


def test_check_rules_fails_without_a_rule_table(tmp_path):
    root = make_repo(tmp_path, "raise LivepatchError('one', 'm')", 'No table here.\n')
    problems = check_docs.check_rules(root)
    assert any('no rule table' in p for p in problems)


DEVELOPER = '''# facts
<a id="s2"></a>
## §2 Writes
### §2.1 enabled
### §2.5 load errors
## §8 The rules
<a id="s8-rule-1"></a>
1. one
<a id="s8-rule-2"></a>
2. two
<a id="s8-rule-3"></a>
3. three
'''


@pytest.mark.parametrize('line, problems', [
    ('# the kernel says EINVAL (docs/developer.md §2.1)', []),
    ('# docs/developer.md §2, §2.5 and §8 rules 1-3', []),
    ('.. docs/developer.md §2.1-§2.5 (writes), §8 rule 2', []),
    ('# docs/developer.md §2.1; see livepatch.rst §3 for the kernel side', []),
    ('# docs/developer.md §2.2 (no such section)', ['§2.2']),
    ('# docs/developer.md §9.7', ['§9.7']),
    ('# docs/developer.md §8 rule 4', ['rule 4']),
    ('# docs/developer.md §8 rules 2-5', ['rule 4', 'rule 5']),
    ('x = 1  # docs/developer.md §2.1 and docs/developer.md §3', ['§3']),
])
def test_citations_name_existing_sections(tmp_path, line, problems):
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'docs' / 'developer.md').write_text(DEVELOPER)
    (tmp_path / 'code.py').write_text('pass\n%s\n' % line)
    found = check_docs.check_citations(str(tmp_path))
    assert len(found) == len(problems)
    for problem, expected in zip(found, problems):
        assert problem.startswith('code.py:2: ') and expected in problem


def test_the_developer_document_has_every_section_the_code_may_cite():
    """The numbering agreed with the code: §0-§11, and §8's ten rules."""
    with open(os.path.join(REPO, 'docs', 'developer.md'), encoding='utf-8') as handle:
        sections, rules = check_docs.developer_sections(handle.read())
    expected = {'0', '1', '1.1', '1.2', '1.3', '1.4', '2', '2.1', '2.2', '2.3', '2.4', '2.5', '3', '3.1', '3.2',
                '3.3', '3.4', '4', '4.1', '4.2', '4.3', '5', '5.1', '5.2', '5.3', '5.4', '5.5', '6', '7', '8',
                '9', '10', '10.1', '10.2', '10.3', '10.4', '10.5', '10.6', '11'} | {'9.%d' % n for n in range(1, 11)}
    assert sections == expected
    assert rules == set(range(1, 11))


# Built from pieces, so that this file does not cite the notes itself.
@pytest.mark.parametrize('line', [
    '# the kernel frees it later (livepatch-kernel' + '.md §2.1)',
    '# measured in the lab (lab-notes' + '.md "Booting")',
    '  Kernel facts rest on ../shared/' + 'research/notes.txt',
])
def test_citations_of_notes_outside_the_repository_fail(tmp_path, line):
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'docs' / 'developer.md').write_text(DEVELOPER)
    (tmp_path / 'code.py').write_text('pass\n%s\n' % line)
    found = check_docs.check_citations(str(tmp_path))
    assert len(found) == 1 and found[0].startswith('code.py:2: ') and 'not in the repository' in found[0]


# RETURN keys described once, in another module, and referenced by name (check_reference).
_STACK = {'return': {'stack_before': {'description': 'Names.', 'type': 'list', 'elements': 'str', 'sample': ['a']},
                     'rollback': {'description': 'What happened.', 'type': 'dict'}}}


def _ref(key, type_='list', elements='str', module='kernelops.livepatch.livepatch_stack'):
    return {key: {'description': 'As RV(%s#module:%s).' % (module, key), 'type': type_, 'elements': elements}}


@pytest.mark.parametrize('returns, expected', [
    (_ref('stack_before'), []),
    # the referenced key must exist, carry a sample, and have the same type
    (_ref('stack_after'), ['m: RETURN key stack_after refers to kernelops.livepatch.livepatch_stack key stack_after,'
                           ' which is not documented']),
    (_ref('rollback', 'dict', None), ['m: RETURN key rollback refers to kernelops.livepatch.livepatch_stack key rollback,'
                                      ' which has no sample']),
    (_ref('stack_before', 'list', 'dict'), ['m: RETURN key stack_before is list/dict, but'
                                            ' kernelops.livepatch.livepatch_stack key stack_before is list/str']),
    (_ref('stack_before', module='kernelops.livepatch.gone'),
     ['m: RETURN key stack_before refers to kernelops.livepatch.gone key stack_before, which is not documented']),
    # not a reference: a leaf without a sample is still reported
    ({'kept': {'description': 'How many.', 'type': 'int'}}, ['m: RETURN key kept has no sample']),
])
def test_return_key_by_reference(returns, expected):
    others = {'kernelops.livepatch.livepatch_stack': _STACK}
    assert check_docs.check_return('m', returns, others=others) == expected
