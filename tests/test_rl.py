"""DQN agents trained by interaction (`[rl]` recipes), with real TensorFlow, TF-MOT and LiteRT.

One tiny task, FrozenLake 4x4 on non-slippery ice (reward 1 only at the goal): a random policy
reaches the goal in ~1.4% of episodes, so an agent that learned from the reward is far above it.
The run is module-scoped and shared: the learning, sparsity and TFLite-parity tests all read it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tfsparse.cli import UserError
from tfsparse.recipe import load_recipe

TINY = """
[model]
name = "q_network"
hidden_units = 64

[train]
seed = 0

[pruning]
final_sparsity = 0.8
begin = 0.1
end = 0.6
frequency = 10
policy = "hidden|q_values"

[export]
variants = ["fp32"]

[rl]
env_id = "FrozenLake-v1"
env_kwargs = { map_name = "4x4", is_slippery = false }
total_steps = 6000
num_envs = 4
buffer_size = 6000
batch_size = 32
learning_rate = 0.003
# gamma 0.9: moving towards the goal is worth 10% more than bumping into a wall, so a small
# network's greedy policy does not get stuck on near-equal values in a test-sized budget.
gamma = 0.9
learning_starts = 200
target_update = 200
epsilon_fraction = 0.5
seeds = [0]
eval_episodes = 200
checkpoint_every = 2000
"""


def write_recipe(folder: Path, text: str = TINY, name: str = "tiny_rl") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def rl_run(tmp_path_factory):
    """A dense and a sparse agent trained by `tfsparse.train`'s own `run` (in-process)."""
    from tfsparse.training import command

    folder = tmp_path_factory.mktemp("rl")
    run_dir = folder / "run"
    metrics = command.run(str(write_recipe(folder)), run_dir, verbose=False)
    return run_dir, metrics


def test_agent_learns_from_the_reward_far_above_a_random_policy(rl_run):
    from tfsparse.datasets import gym_env

    run_dir, metrics = rl_run
    info = gym_env.env_info("FrozenLake-v1", {"map_name": "4x4", "is_slippery": False})
    rng = np.random.default_rng(0)
    random_policy = gym_env.evaluate(lambda x: rng.random((len(x), 4)), info, 200, 10_000)["success_rate"]
    summary = metrics["rl"]["summary"]
    # Measured through each agent's own fp32 TFLite file (LiteRT) on 200 seeded episodes.
    for variant in ("dense", "sparse"):
        assert summary[variant]["mean"] >= random_policy + 0.5, (variant, summary[variant], random_policy)
    assert metrics["rl"]["reference"]["success_rate"] == 1.0  # value iteration's optimum on this map
    assert metrics["metric"] == "success_rate"
    assert set(metrics["generalisation"]) >= {"dense", "sparse"}
    assert {"train", "test", "gap"} <= set(metrics["generalisation"]["sparse"])


def test_masks_are_respected_during_rl_training(rl_run):
    """Pruned during RL: the sparse agent ends at the target sparsity and the schedule is in
    gradient steps of the agent (not epochs)."""
    import tensorflow as tf

    run_dir, metrics = rl_run
    agent = metrics["rl"]["agents"]["sparse-seed0"]
    assert agent["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert metrics["overall_sparsity"] == pytest.approx(0.8, abs=0.01)
    assert metrics["schedule"]["unit"] == "agent gradient steps"
    assert metrics["schedule"]["end_step"] <= agent["gradient_steps"]
    sparse = tf.keras.models.load_model(run_dir / "sparse.keras", compile=False)
    for name in ("hidden1", "hidden2", "q_values"):
        kernel = sparse.get_layer(name).kernel.numpy()
        assert np.mean(kernel == 0) == pytest.approx(0.8, abs=0.02), name
    dense = tf.keras.models.load_model(run_dir / "dense.keras", compile=False)
    assert np.mean(dense.get_layer("hidden2").kernel.numpy() == 0) < 0.01


def test_exported_tflite_policy_acts_like_the_keras_policy_on_every_state(rl_run):
    import tensorflow as tf

    from tfsparse.exporting.converter import convert
    from tfsparse.training.rl import tflite_predict

    run_dir, _ = rl_run
    states = np.eye(16, dtype=np.float32)
    for which in ("dense", "sparse"):
        model = tf.keras.models.load_model(run_dir / f"{which}.keras", compile=False)
        data = convert(model, "fp32", sparse=which == "sparse", input_names="state", output_name="q_values")
        keras_q = model(states).numpy()
        lite_q = tflite_predict(data)(states)
        np.testing.assert_allclose(lite_q, keras_q, atol=1e-5)
        assert np.array_equal(np.argmax(lite_q, 1), np.argmax(keras_q, 1)), which


def test_resume_continues_the_step_counter_and_the_pruning_schedule(tmp_path, monkeypatch):
    """An agent killed after its first checkpoint resumes there: step counter, gradient steps and
    TF-MOT's pruning_step continue, and it ends exactly where an uninterrupted agent ends."""
    from tfsparse.datasets import gym_env
    from tfsparse.training import rl

    recipe = load_recipe(write_recipe(tmp_path), ["rl.total_steps=1200", "rl.checkpoint_every=400",
                                                  "rl.learning_starts=100"])
    info = gym_env.env_info(recipe.rl.env_id, recipe.rl.env_kwargs)

    def pruning_step(agent):
        return int(next(layer for layer in agent.online.layers if isinstance(layer, rl.pruning.PruneLowMagnitude))
                   .pruning_step.numpy())

    whole = rl.Agent(recipe, info, "sparse", 0, tmp_path / "whole", 1200, verbose=False)
    whole_state = whole.train()

    saves = []
    original = rl.Agent.save

    def save_then_die(self, step, *args):
        original(self, step, *args)
        saves.append(step)
        if len(saves) == 1:
            raise KeyboardInterrupt  # the kill, right after the first checkpoint
    monkeypatch.setattr(rl.Agent, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        rl.Agent(recipe, info, "sparse", 0, tmp_path / "killed", 1200, verbose=False).train()
    assert json.loads((tmp_path / "killed" / rl.AGENT_STATE).read_text())["step"] == 400
    resumed = rl.Agent(recipe, info, "sparse", 0, tmp_path / "killed", 1200, verbose=False)
    state = resumed.train()
    assert saves == [400, 800, 1200]  # it went on from 400, not from 0
    assert state["step"] == whole_state["step"] == 1200
    assert state["gradient_steps"] == whole_state["gradient_steps"] == rl.gradient_steps_total(recipe.rl, 1200)
    assert pruning_step(resumed) == pruning_step(whole) == state["gradient_steps"]
    assert state["episodes"]["count"] == whole_state["episodes"]["count"]
    # Replay buffer, RNG, environments and optimizer were restored: the same agent as uninterrupted.
    for a, b in zip(resumed.online.get_weights(), whole.online.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # Only the last checkpoint is kept.
    assert [p.name for p in (tmp_path / "killed").glob("ckpt-*")] == ["ckpt-1200"]


def test_numpy_acting_equals_the_keras_network(tmp_path):
    """The agent explores with a numpy copy of its network (fast); it must be the same function."""
    from tfsparse.datasets import gym_env
    from tfsparse.training import rl

    recipe = load_recipe(write_recipe(tmp_path), ["model.hidden_units=16"])
    for env_id, kwargs in (("FrozenLake-v1", {"map_name": "4x4", "is_slippery": False}), ("MountainCar-v0", {})):
        info = gym_env.env_info(env_id, kwargs)
        agent = rl.Agent(recipe, info, "sparse", 0, tmp_path / env_id, 6000, verbose=False)
        agent.build()
        agent.step_callback.on_train_begin()
        # Gradient steps past the pruning schedule's first mask update: masked entries then drift
        # with the optimizer until the next forward pass; acting must use the masked network.
        rng = np.random.default_rng(0)
        x = gym_env.probe_observations(info)
        k, b = 200, 8
        batch = [x[rng.integers(0, len(x), (k, b))], rng.integers(0, info.num_actions, (k, b)).astype(np.int32),
                 rng.random((k, b)).astype(np.float32), x[rng.integers(0, len(x), (k, b))],
                 np.zeros((k, b), np.float32)]
        agent.train_steps(*batch)
        agent.acting_weights()
        assert agent.sparsity() > 0.1  # the schedule has started masking
        np.testing.assert_allclose(agent.act(x), agent.online(x, training=False).numpy(), atol=1e-5)


def test_rl_section_is_validated_with_one_line_errors(tmp_path):
    cases = {"rl.env_id=\"FrozenLak-v1\"": "did you mean FrozenLake-v1",
             "rl.seeds=[]": "rl.seeds must be a non-empty list",
             "rl.seeds=[1, 1]": "distinct",
             "rl.gamma=1.5": "rl.gamma must be in [0, 1]",
             "rl.algorithm=\"ppo\"": "rl.algorithm must be one of dqn",
             "rl.batch_size=100000": "exceeds rl.buffer_size",
             "rl.total_stepz=5": "unknown key 'rl.total_stepz'",
             "train.equal_epochs_dense=1": "train.equal_epochs_dense must be true or false"}
    recipe = write_recipe(tmp_path)
    for override, message in cases.items():
        with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_recipe(recipe, [override])
    loaded = load_recipe(recipe)
    assert loaded.rl.env_kwargs == {"map_name": "4x4", "is_slippery": False}
    # The resolved recipe (config.toml, what --resume reads) round-trips the [rl] section.
    again = tmp_path / "again.toml"
    again.write_text(loaded.to_toml())
    assert load_recipe(again).rl == loaded.rl


def test_the_shipped_rl_recipes_load():
    root = Path(__file__).parent.parent / "models"
    fl, mc = load_recipe(root / "frozenlake_dqn.toml"), load_recipe(root / "mountaincar_dqn.toml")
    assert fl.rl.env_kwargs == {"map_name": "8x8", "is_slippery": True} and len(fl.rl.seeds) >= 3
    assert mc.rl.env_id == "MountainCar-v0" and len(mc.rl.seeds) >= 3
    assert fl.rl.eval_episodes >= 1000 and mc.rl.eval_episodes >= 1000
