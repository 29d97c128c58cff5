# Copyright: vfio.proxmox contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proxmox's format of a configuration ID (a resource mapping's name), on its own so that the planner can check
`mapping` names without loading the mapping code (the controller compiles every module it imports, per host)."""

from __future__ import annotations

import re

# pve-common src/PVE/JSONSchema.pm: our $CONFIGID_RE = qr/[a-z][a-z0-9_-]+/i
CONFIGID_RE = re.compile(r"^[a-z][a-z0-9_-]+$", re.IGNORECASE)
