"""`[rl]`: a recipe section for an agent trained by interaction with a gymnasium environment.

A recipe with `[rl]` trains a DQN agent (Mnih et al., Nature 2015; Double DQN, van Hasselt et
al., AAAI 2016) instead of fitting a data set: the agent sees only observations, its actions and
the environment's reward. The `[pruning]` section prunes the Q-network *during* RL training with
the same TF-MOT schedules and policies as supervised recipes (`begin`/`end` are fractions of the
agent's gradient steps), after Graesser et al., "The State of Sparse Training in Deep
Reinforcement Learning", ICML 2022. No TensorFlow here: recipes validate without it.

    [rl]
    algorithm = "dqn"
    env_id = "FrozenLake-v1"
    env_kwargs = { map_name = "8x8", is_slippery = true }
    total_steps = 200000          # environment steps per agent
    seeds = [0, 1, 2]             # one dense and one sparse agent per seed

Every step count is in environment steps (summed over the `num_envs` copies stepped in lock-step),
as in Stable-Baselines3's DQN, so recipes are comparable with its published hyper-parameters.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from tfsparse.recipe import _check, _is_number, _Section

ALGORITHMS = ("dqn",)


@dataclass
class RLConfig(_Section):
    """[rl]: environment, DQN hyper-parameters, seeds and the evaluation protocol."""

    section = "rl"
    algorithm: str = "dqn"
    env_id: str = "FrozenLake-v1"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    total_steps: int = 100_000
    num_envs: int = 4
    buffer_size: int = 50_000
    batch_size: int = 64
    learning_rate: float = 1e-3
    gamma: float = 0.99
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_fraction: float = 0.5  # of total_steps, linear decay from start to end
    learning_starts: int = 1000
    train_frequency: int = 4  # environment steps between gradient updates
    gradient_steps: int = 1  # gradient updates each time
    target_update: int = 1000  # environment steps between target-network copies
    double: bool = True  # Double DQN target: online argmax, target value
    max_grad_norm: float = 10.0
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    eval_episodes: int = 1000
    eval_seed: int = 10_000  # evaluation episode i is reset with seed eval_seed + i
    checkpoint_every: int = 10_000  # environment steps between checkpoints (resume)

    def __post_init__(self):
        _check(self.algorithm in ALGORITHMS, f"rl.algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")
        _check(isinstance(self.env_id, str) and self.env_id, f"rl.env_id must be a gymnasium id, got {self.env_id!r}")
        _check(isinstance(self.env_kwargs, dict), f"rl.env_kwargs must be a table, got {self.env_kwargs!r}")
        for name in ("total_steps", "num_envs", "buffer_size", "batch_size", "train_frequency", "gradient_steps",
                     "target_update", "eval_episodes", "checkpoint_every"):
            value = getattr(self, name)
            _check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                   f"rl.{name} must be an integer >= 1, got {value!r}")
        _check(isinstance(self.learning_starts, int) and self.learning_starts >= 0,
               f"rl.learning_starts must be an integer >= 0, got {self.learning_starts!r}")
        _check(_is_number(self.learning_rate) and self.learning_rate > 0,
               f"rl.learning_rate must be a number > 0, got {self.learning_rate!r}")
        _check(_is_number(self.gamma) and 0 <= self.gamma <= 1, f"rl.gamma must be in [0, 1], got {self.gamma!r}")
        for name in ("epsilon_start", "epsilon_end", "epsilon_fraction"):
            value = getattr(self, name)
            _check(_is_number(value) and 0 <= value <= 1, f"rl.{name} must be in [0, 1], got {value!r}")
        _check(self.epsilon_end <= self.epsilon_start,
               f"rl.epsilon_end {self.epsilon_end} exceeds rl.epsilon_start {self.epsilon_start}")
        _check(isinstance(self.double, bool), f"rl.double must be true or false, got {self.double!r}")
        _check(_is_number(self.max_grad_norm) and self.max_grad_norm > 0,
               f"rl.max_grad_norm must be a number > 0, got {self.max_grad_norm!r}")
        _check(isinstance(self.seeds, list) and self.seeds and all(isinstance(s, int) and not isinstance(s, bool)
                                                                   for s in self.seeds)
               and len(set(self.seeds)) == len(self.seeds),
               f"rl.seeds must be a non-empty list of distinct integers, got {self.seeds!r}")
        _check(isinstance(self.eval_seed, int), f"rl.eval_seed must be an integer, got {self.eval_seed!r}")
        _check(self.batch_size <= self.buffer_size,
               f"rl.batch_size {self.batch_size} exceeds rl.buffer_size {self.buffer_size}")
        try:
            import gymnasium
        except ImportError:
            raise ValueError("[rl] needs gymnasium: pip install gymnasium") from None
        if self.env_id not in gymnasium.envs.registry:
            from tfsparse.cli import unknown_name
            raise ValueError(str(unknown_name("rl.env_id", self.env_id, gymnasium.envs.registry)))

    def get_config(self):
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def epsilon(self, step: int) -> float:
        """Linear decay from epsilon_start to epsilon_end over epsilon_fraction of total_steps."""
        span = max(1, math.ceil(self.epsilon_fraction * self.total_steps))
        return self.epsilon_end + (self.epsilon_start - self.epsilon_end) * max(0.0, 1 - step / span)
