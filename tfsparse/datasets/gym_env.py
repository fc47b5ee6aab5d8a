"""Gymnasium environments for `[rl]` recipes: observation encoding, seeded evaluation, references.

The RL trainer (`tfsparse.training.rl`) learns by interaction; this module is what trainer,
exporter, model card and report share about the environment:

- `EnvInfo`: the observation kind (discrete -> one-hot, box -> raw vector), actions, time limit;
- `evaluate(predict, ...)`: the greedy policy of any `predict(observations) -> action values`
  (Keras or a LiteRT file) over `episodes` episodes, episode i reset with seed `seed + i`, run
  in lock-step so one batched forward pass per time step serves every episode;
- a reference policy where one exists: FrozenLake's optimum from value iteration over the
  environment's own transition model (`value_iteration`; the agent never sees it),
  MountainCar's textbook "push in the direction of motion" heuristic (not an optimum);
- `load_rl(recipe)`: `Splits` for the exporter (probe observations + the reference's actions,
  so the exported files' `accuracy` is agreement with the reference policy, and
  `extra_metrics` runs the episodes).

Nothing downloads: gymnasium's classic-control and toy-text environments are pure Python.

    >>> info = env_info("FrozenLake-v1", {"map_name": "4x4", "is_slippery": False})
    >>> info.obs_dim, info.actions
    (16, ['left', 'down', 'right', 'up'])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from tfsparse.cli import UserError
from tfsparse.datasets.splits import Splits

ACTION_NAMES = {"FrozenLake-v1": ["left", "down", "right", "up"],
                "MountainCar-v0": ["push left", "no push", "push right"]}
TRAIN_SEED_STRIDE = 1_000_003  # agent seed s trains on env seeds s * stride + i (never eval seeds)


def _gym(needed_by: str = "[rl] recipes"):
    """The gymnasium module; a one-line UserError saying what needs it when it is not installed
    (the one import wrapper: `tfsparse.datasets.frozenlake` passes its own `needed_by`)."""
    try:
        import gymnasium
    except ImportError:
        raise UserError(f"{needed_by} need gymnasium: pip install gymnasium") from None
    return gymnasium


def make_env(env_id: str, env_kwargs: dict, needed_by: str = "[rl] recipes", settings: str = "rl.env_kwargs"):
    """`gymnasium.make(env_id, **env_kwargs)`; kwargs the environment rejects are a one-line
    UserError naming the recipe `settings` they came from."""
    gym = _gym(needed_by)
    try:
        return gym.make(env_id, **env_kwargs)
    except TypeError as e:
        raise UserError(f"{settings} {env_kwargs} do not fit {env_id}: {e}") from None


@dataclass
class EnvInfo:
    env_id: str
    env_kwargs: dict
    discrete_obs: bool
    obs_dim: int
    obs_low: list | None
    obs_high: list | None
    actions: list[str]
    max_episode_steps: int | None

    @property
    def num_actions(self) -> int:
        return len(self.actions)

    def encode(self, obs) -> np.ndarray:
        """Observations from `env.step` -> the network's input (one-hot for a discrete observation)."""
        obs = np.asarray(obs)
        if self.discrete_obs:
            return np.eye(self.obs_dim, dtype=np.float32)[obs.astype(np.int64).reshape(-1)]
        return obs.astype(np.float32).reshape(-1, self.obs_dim)

    def model_args(self) -> dict:
        """`q_network` arguments the environment fixes (a recipe's [model] adds width/depth)."""
        if self.discrete_obs:
            return {"num_states": self.obs_dim, "num_classes": self.num_actions}
        return {"obs_low": self.obs_low, "obs_high": self.obs_high, "num_classes": self.num_actions}

    def success(self, episode_return: float, terminated: bool) -> bool | None:
        """Whether an episode reached the goal; None where the task has no notion of it."""
        if self.env_id == "FrozenLake-v1":
            return episode_return > 0  # the only reward is 1 at the goal
        if self.env_id == "MountainCar-v0":
            return terminated  # MountainCar terminates only at the flag; else truncated at 200 steps
        return None


def env_info(env_id: str, env_kwargs: dict) -> EnvInfo:
    gym = _gym()
    env = make_env(env_id, env_kwargs)
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise UserError(f"rl.env_id {env_id}: DQN needs a discrete action space, got {env.action_space}")
    space = env.observation_space
    n = int(env.action_space.n)
    actions = ACTION_NAMES.get(env_id, [f"action{i}" for i in range(n)])
    steps = env.spec.max_episode_steps if env.spec else None
    if isinstance(space, gym.spaces.Discrete):
        return EnvInfo(env_id, dict(env_kwargs), True, int(space.n), None, None, actions, steps)
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1 and np.all(np.isfinite(space.low)) \
            and np.all(np.isfinite(space.high)):
        return EnvInfo(env_id, dict(env_kwargs), False, int(space.shape[0]), space.low.tolist(), space.high.tolist(),
                       actions, steps)
    raise UserError(f"rl.env_id {env_id}: observation space {space} is neither discrete nor a bounded 1-D box")


def evaluate(predict: Callable, info: EnvInfo, episodes: int, seed: int) -> dict:
    """Greedy policy of `predict` over `episodes` seeded episodes (episode i: reset(seed=seed + i)).

    All episodes run in lock-step: one batched `predict` per time step over the episodes still
    running, so 1000 episodes take a time limit's worth of forward passes, not 1000 times that.
    """
    envs = [make_env(info.env_id, info.env_kwargs) for _ in range(episodes)]
    obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, np.int64)
    terminated = np.zeros(episodes, bool)
    alive = list(range(episodes))
    while alive:
        actions = np.argmax(np.asarray(predict(info.encode([obs[i] for i in alive]))), axis=1)
        still = []
        for i, a in zip(alive, actions):
            obs[i], r, term, trunc, _ = envs[i].step(int(a))
            returns[i] += r
            lengths[i] += 1
            if term or trunc:
                terminated[i] = term
            else:
                still.append(i)
        alive = still
    result = {"mean_return": round(float(returns.mean()), 4), "std_return": round(float(returns.std()), 4),
              "mean_length": round(float(lengths.mean()), 2), "episodes": episodes,
              "eval_seeds": f"{seed}..{seed + episodes - 1}"}
    successes = [info.success(r, t) for r, t in zip(returns, terminated)]
    if successes[0] is not None:
        result["success_rate"] = round(float(np.mean(successes)), 4)
    return result


def task_metric(info: EnvInfo) -> str:
    """The score reports show: the success rate where the task defines one, else the mean return."""
    return "success_rate" if info.success(0.0, False) is not None else "mean_return"


# ---- reference policies (what the agent is compared with; it never sees them) -------------------

GAMMA = 0.99  # discount of the value-iteration optimum (FrozenLake's reference policy)


def value_iteration(P: dict, n_states: int, n_actions: int, gamma: float = GAMMA, tol: float = 1e-10) -> np.ndarray:
    """Q*(s, a) from the transition model `P[s][a] = [(prob, next_state, reward, terminated), ...]`."""
    q = np.zeros((n_states, n_actions))
    while True:
        v = q.max(axis=1)
        new = np.array([[sum(p * (r + (0.0 if done else gamma * v[s2])) for p, s2, r, done in P[s][a])
                         for a in range(n_actions)] for s in range(n_states)])
        if np.max(np.abs(new - q)) < tol:
            return new
        q = new


def greedy(q: np.ndarray) -> np.ndarray:
    """argmax per state; ties (within 1e-9) go to the lowest action index, deterministically."""
    return np.argmax(q >= q.max(axis=1, keepdims=True) - 1e-9, axis=1)


def terminal_states(desc: np.ndarray) -> np.ndarray:
    """FrozenLake's holes and goal (map `desc`): the states where an episode ends, no action taken."""
    return np.flatnonzero(np.isin(desc.reshape(-1), [b"H", b"G"]))


def reference(info: EnvInfo):
    """(name, action-table or action function, description) of the task's reference policy, or None."""
    if info.env_id == "FrozenLake-v1":
        env = make_env(info.env_id, info.env_kwargs)
        q = value_iteration(env.unwrapped.P, info.obs_dim, info.num_actions)
        table = greedy(q)
        return ("value iteration optimum", lambda obs: np.eye(info.num_actions)[table[np.argmax(obs, axis=1)]],
                "greedy policy of Q* from value iteration over the environment's transition model (gamma 0.99)")
    if info.env_id == "MountainCar-v0":
        # Push in the direction of motion: pumps energy into the swing; a common hand-written baseline.
        return ("push with the velocity", lambda obs: np.eye(3)[np.where(np.asarray(obs)[:, 1] >= 0, 2, 0)],
                "heuristic: push right when velocity >= 0, else left (a hand-written baseline, not an optimum)")
    return None


def probe_observations(info: EnvInfo) -> np.ndarray:
    """Inputs on which files are compared with Keras: every state (discrete) or a 41-point grid per
    dimension over the observation box (2-D boxes; random points in higher dimensions)."""
    if info.discrete_obs:
        return np.eye(info.obs_dim, dtype=np.float32)
    low, high = np.asarray(info.obs_low), np.asarray(info.obs_high)
    if info.obs_dim == 2:
        a, b = np.meshgrid(np.linspace(low[0], high[0], 41), np.linspace(low[1], high[1], 41))
        return np.stack([a.ravel(), b.ravel()], axis=1).astype(np.float32)
    return np.random.default_rng(0).uniform(low, high, (2000, info.obs_dim)).astype(np.float32)


def load_rl(recipe) -> Splits:
    """`Splits` of an `[rl]` recipe: probe observations for export checks, labelled with the
    reference policy's action (so `accuracy` = agreement with it; random labels 0 without one),
    and `extra_metrics` = the seeded evaluation episodes plus the reference policy's own score."""
    rl = recipe.rl
    info = env_info(rl.env_id, rl.env_kwargs)
    x = probe_observations(info)
    if info.env_id == "FrozenLake-v1":  # holes and goal end the episode: no action is taken there
        x = np.delete(x, terminal_states(make_env(info.env_id, info.env_kwargs).unwrapped.desc), axis=0)
    ref = reference(info)
    y = (np.argmax(ref[1](x), axis=1) if ref else np.zeros(len(x))).astype(np.int32)
    ref_score = {}

    def extra_metrics(predict) -> dict:
        result = evaluate(predict, info, rl.eval_episodes, rl.eval_seed)
        if ref is not None:
            if not ref_score:
                ref_score.update(evaluate(ref[1], info, rl.eval_episodes, rl.eval_seed))
            metric = task_metric(info)
            result[f"reference_{metric}"] = ref_score[metric]
            result["reference_policy"] = ref[0]
            result["agreement_with_reference"] = float(np.mean(np.argmax(np.asarray(predict(x)), 1) == y))
        result.update(env=info.env_id, env_kwargs=info.env_kwargs, max_episode_steps=info.max_episode_steps)
        if info.env_id == "FrozenLake-v1":  # the name the report and model card already show
            result["optimal_success_rate"] = result.get("reference_success_rate")
        return result

    pre = {"kind": "one_hot_state" if info.discrete_obs else "observation", "env": info.env_id,
           "env_kwargs": info.env_kwargs, "actions": info.actions,
           "output": {"name": "q_values",
                      "meaning": "one estimated discounted return per action (DQN); the greedy action is the argmax"},
           "formula": ("input = one-hot of the observation (state index)" if info.discrete_obs else
                       "input = the observation exactly as env.step returns it (the network rescales it)"),
           "note": "output = one estimated discounted return per action (DQN); action = argmax (greedy policy)"}
    if info.discrete_obs:
        pre["num_states"] = info.obs_dim
    return Splits(name=info.env_id, labels=list(info.actions), x_train=x, y_train=y, x_val=x[:0], y_val=y[:0],
                  x_test=x, y_test=y, preprocessing=pre, extra_metrics=extra_metrics,
                  task_metric=task_metric(info))
