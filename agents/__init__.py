"""Risk-aware agents (installed as ``riskrl.agents``).

Every agent acts on ``mean - risk_tolerance * std`` of its Bayesian estimates; see
:class:`riskrl.agents.Agent` for the shared stable-baselines3-shaped API.
"""

from .base import Agent
from .buffers import ReplayBuffer
from .callbacks import BaseCallback, CallbackList, CheckpointCallback, EvalCallback
from .dqn import BayesDQN, BayesDQNConfig
from .mpc import BayesMPC, BayesMPCConfig
from .registry import agent_class, load_agent

__all__ = [
    "Agent",
    "BaseCallback",
    "BayesDQN",
    "BayesDQNConfig",
    "BayesMPC",
    "BayesMPCConfig",
    "CallbackList",
    "CheckpointCallback",
    "EvalCallback",
    "ReplayBuffer",
    "agent_class",
    "load_agent",
]
