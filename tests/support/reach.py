"""The policy the reach tests run the bot under: any change by the requester needs one approval
from the SRE group."""

from __future__ import annotations

POLICY = """
rules:
  - name: production
    namespace: "*"
    allow:
      set-weight: [U0REQ00001]
      approve: [S0SRE00000]
    approvals:
      - count: 1
        from: [S0SRE00000]
        above_weight: 0
"""
