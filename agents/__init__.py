"""Risk-aware agents (installed as ``riskrl.agents``).

Every agent acts on ``mean - risk_tolerance * std`` of its Bayesian estimates; see
:class:`riskrl.agents.Agent` for the shared stable-baselines3-shaped API. Callbacks are
stable-baselines3's (re-exported here, with riskrl's :class:`EvalCallback`,
:class:`CheckpointCallback` and :class:`ProgressBarCallback` as SB3 subclasses).
"""

from .base import Agent
from .buffers import ReplayBuffer
from .callbacks import (
    BaseCallback,
    CallbackList,
    CheckpointCallback,
    EvalCallback,
    ProgressBarCallback,
    StopTrainingOnMaxEpisodes,
    StopTrainingOnRewardThreshold,
)
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
    "ProgressBarCallback",
    "ReplayBuffer",
    "StopTrainingOnMaxEpisodes",
    "StopTrainingOnRewardThreshold",
    "agent_class",
    "load_agent",
]
