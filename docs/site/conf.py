# Copyright (c) Ansible Project
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Created with antsibull-docs 2.28.0 (sphinx-init), adapted for kernelops.livepatch:
# the build is offline (no intersphinx inventories are fetched) and the few
# labels of the Ansible documentation that antsibull-docs output refers to are
# resolved to links by _resolve_ansible_docs below.
"""Sphinx configuration of the kernelops.livepatch docs site."""

from __future__ import annotations

from docutils import nodes

project = 'kernelops.livepatch'
copyright = 'kernelops.livepatch contributors'  # pylint: disable=redefined-builtin

title = 'kernelops.livepatch'
html_short_title = 'kernelops.livepatch'

extensions = ['sphinx.ext.autodoc', 'sphinx.ext.intersphinx', 'sphinx_antsibull_ext']

pygments_style = 'ansible'

highlight_language = 'YAML+Jinja'

html_theme = 'sphinx_ansible_theme'
html_show_sphinx = False

display_version = False

html_use_smartypants = True
html_use_modindex = False
html_use_index = False
html_copy_source = False

# Offline build: CI reaches no documentation hosts, so no inventories.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

default_role = 'any'

nitpicky = True

_ANSIBLE_DOCS = 'https://docs.ansible.com/projects/ansible/devel/'

# Labels of the Ansible documentation used by antsibull-docs generated pages:
# label -> (path below _ANSIBLE_DOCS, title). Any other dangling reference
# stays a warning, which -W turns into a failed build.
_ANSIBLE_LABELS = {
    'ansible_configuration_settings': (
        'reference_appendices/config.html#ansible-configuration-settings',
        'Ansible Configuration Settings',
    ),
    'action_plugins': (
        'plugins/action.html#action-plugins',
        'Action plugins',
    ),
    'common_return_values': (
        'reference_appendices/common_return_values.html#common-return-values',
        'Return Values',
    ),
}


def _resolve_ansible_docs(app, env, node, contnode):  # pylint: disable=unused-argument
    """Link references to the Ansible documentation without an inventory."""
    if node.get('refdomain') != 'std':
        return None
    target = node.get('reftarget', '')
    path, label_title = _ANSIBLE_LABELS.get(target, (None, None))
    if path is None and target.startswith('ansible_collections.ansible.builtin.'):
        # ansible-core's own plugins: ansible_collections.ansible.builtin.<name>_<type>
        path = 'collections/ansible/builtin/%s.html' % target.rsplit('.', 1)[1]
        label_title = target[len('ansible_collections.'):]
    if path is None:
        return None
    reference = nodes.reference('', '', internal=False, refuri=_ANSIBLE_DOCS + path)
    if node.get('refexplicit'):
        reference += contnode
    else:
        reference += nodes.inline(label_title, label_title)
    return reference


def setup(app):
    """Register the offline resolver for Ansible documentation labels."""
    app.connect('missing-reference', _resolve_ansible_docs)
