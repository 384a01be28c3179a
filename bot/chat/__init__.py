"""Chat: the rollout card (Slack Block Kit and terminal text), and the adapters that post it."""
