"""Risk-aware agents (installed as ``riskrl.agents``)."""
