# Sphinx settings for the reference site; scripts/docs builds it with -W (warnings fail).
import os

project = "vfio.proxmox"
copyright = "vfio.proxmox contributors"
title = "vfio.proxmox reference"
html_short_title = "vfio.proxmox"

extensions = ["sphinx.ext.intersphinx", "sphinx_antsibull_ext"]
pygments_style = "ansible"
highlight_language = "YAML+Jinja"
html_theme = "sphinx_ansible_theme"
html_show_sphinx = False
html_use_modindex = False
html_use_index = False
html_copy_source = False
html_theme_options = {"collapse_navigation": False}
templates_path = ["_templates"]

# No network here: the labels our pages use in Ansible's own docs come from a local
# inventory (docs/ansible_labels.py writes it next to the sources).
HERE = os.path.dirname(os.path.abspath(__file__))
intersphinx_mapping = {
    "ansible_devel": ("https://docs.ansible.com/projects/ansible/devel/", os.path.join(HERE, "ansible_devel.inv")),
}
intersphinx_disabled_reftypes = []
default_role = "any"
nitpicky = True
