"""The policy the approvals tests run the bot under: a production change above 25% held until
two of the SRE group approve it."""

from __future__ import annotations

POLICY = """
rules:
  - name: production
    namespace: "*"
    allow:
      set-weight: [U0REQ00001, S0SRE00000]
      rollback: [U0REQ00001, S0SRE00000]
      approve: [S0SRE00000]
    approvals:
      - count: 2
        from: [S0SRE00000]
        above_weight: 25
"""
