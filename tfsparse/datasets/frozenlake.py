"""FrozenLake-v1 (gymnasium) as a supervised data set for a policy network, plus its success rate.

FrozenLake is the classic sparse-reward task: reward 1 only on reaching the goal,
0 everywhere else, episodes end in a hole or after the time limit (100 steps).
On slippery ice (`is_slippery = true`) the agent moves in the intended direction
only 1/3 of the time and sideways otherwise.

The honest short route to a good policy on 2 cores: the environment exposes its
full transition model (`env.unwrapped.P`), so value iteration (Bellman, 1957;
Sutton & Barto, "Reinforcement Learning", 2nd ed., section 4.4) gives the
optimal action values Q*. A policy network (one-hot state -> softmax over the 4
actions) is then trained by the normal trainer to imitate the greedy Q* policy on
the states it actually visits: training and validation examples are the states of
epsilon-greedy rollouts (seeded), labelled with the optimal action; the test split
is every non-terminal state once, so test accuracy is agreement with the optimal
policy over the whole map.

`extra_metrics` is the task's real score: the success rate of the network's greedy
policy over `EPISODES` seeded episodes of the real gymnasium environment (same
seeds for dense, sparse and the optimal policy, which is reported for reference).
Nothing is downloaded: `fetch()` only checks that gymnasium is installed.
"""

from __future__ import annotations

import numpy as np

from tfsparse.datasets import gym_env
# The tabular solver lives with the environments (the reference policy of an [rl] recipe uses it too).
from tfsparse.datasets.gym_env import greedy, terminal_states, value_iteration
from tfsparse.datasets.splits import Splits
from tfsparse.errors import UserError

ENV_ID = "FrozenLake-v1"
ACTIONS = ["left", "down", "right", "up"]  # gymnasium's action order
EPISODES = 1000
EVAL_SEED = 10_000  # episode i is reset with seed EVAL_SEED + i
ROLLOUT_EPSILON = 0.3  # exploration while collecting states, so off-path states are labelled too
TRAIN_STATES = 20_000
DATA_SEED = 7
NEEDED_BY = "frozenlake recipes"  # the missing-gymnasium message: "frozenlake recipes need gymnasium"


def fetch(verbose: bool = True) -> str:
    """Nothing to download: the environment is pure Python. Checks gymnasium is importable."""
    gym_env._gym(NEEDED_BY)
    return "gymnasium installed (nothing to download)"


def make_env(is_slippery: bool, map_name: str):
    return gym_env.make_env(ENV_ID, {"is_slippery": is_slippery, "map_name": map_name}, needed_by=NEEDED_BY,
                            settings="data.is_slippery / data.map_name")


def rollout_states(env, optimal: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` states visited by an epsilon-greedy version of the optimal policy (seeded)."""
    rng = np.random.default_rng(seed)
    states, episode = [], 0
    while len(states) < n:
        s, _ = env.reset(seed=seed * 100_003 + episode)
        episode += 1
        done = False
        while not done and len(states) < n:
            states.append(s)
            a = int(rng.integers(len(ACTIONS))) if rng.random() < ROLLOUT_EPSILON else int(optimal[s])
            s, _, terminated, truncated, _ = env.step(a)
            done = terminated or truncated
    return np.array(states)


def success_rate(env, policy: np.ndarray, episodes: int = EPISODES, seed: int = EVAL_SEED) -> float:
    """Fraction of `episodes` (reset with seeds seed..seed+episodes-1) that reach the goal."""
    successes = 0
    for i in range(episodes):
        s, _ = env.reset(seed=seed + i)
        done, reward = False, 0.0
        while not done:
            s, reward, terminated, truncated, _ = env.step(int(policy[s]))
            done = terminated or truncated
        successes += reward > 0
    return successes / episodes


def one_hot(states: np.ndarray, n_states: int) -> np.ndarray:
    return np.eye(n_states, dtype=np.float32)[states]


def load(data_config, model_args) -> Splits:
    if data_config.is_slippery is None:
        raise UserError("the frozenlake data set needs data.is_slippery = true or false in the recipe")
    map_name = data_config.map_name or "4x4"
    env = make_env(data_config.is_slippery, map_name)
    n_states, n_actions = int(env.observation_space.n), int(env.action_space.n)
    if int(model_args.get("num_states", n_states)) != n_states:
        raise UserError(f"model.num_states={model_args['num_states']} but FrozenLake {map_name} has {n_states} states")
    q = value_iteration(env.unwrapped.P, n_states, n_actions)
    optimal = greedy(q)
    terminal = terminal_states(env.unwrapped.desc)
    states = rollout_states(env, optimal, TRAIN_STATES + data_config.validation_examples, DATA_SEED)
    train, val = states[:TRAIN_STATES], states[TRAIN_STATES:]
    test = np.setdiff1d(np.arange(n_states), terminal)  # every state where the action matters
    all_states = one_hot(np.arange(n_states), n_states)
    optimal_rate = None

    def extra_metrics(predict) -> dict:
        # The policy is a function of the state alone: one forward pass over every state gives
        # the whole greedy table, which then drives the real environment.
        nonlocal optimal_rate
        policy = np.argmax(np.asarray(predict(all_states)), axis=1)
        if optimal_rate is None:
            optimal_rate = success_rate(env, optimal)
        return {"success_rate": success_rate(env, policy), "optimal_success_rate": optimal_rate,
                "episodes": EPISODES, "eval_seeds": f"{EVAL_SEED}..{EVAL_SEED + EPISODES - 1}",
                "agreement_with_optimal": float(np.mean(policy[test] == optimal[test])),
                "env": ENV_ID, "is_slippery": data_config.is_slippery, "map_name": map_name,
                "max_episode_steps": env.spec.max_episode_steps}

    return Splits(
        name="frozenlake", labels=ACTIONS,
        x_train=one_hot(train, n_states), y_train=optimal[train].astype(np.int32),
        x_val=one_hot(val, n_states), y_val=optimal[val].astype(np.int32),
        x_test=one_hot(test, n_states), y_test=optimal[test].astype(np.int32),
        preprocessing={"kind": "one_hot_state", "env": ENV_ID, "is_slippery": data_config.is_slippery,
                       "map_name": map_name, "num_states": n_states, "actions": ACTIONS,
                       "note": "input = one-hot of the state index (row * ncol + col); "
                               "action = argmax of the output (greedy policy)"},
        extra_metrics=extra_metrics, task_metric="success_rate",
    )
