"""Torch-batched gymnasium environments (installed as ``riskrl.envs``)."""
