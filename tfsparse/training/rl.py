"""DQN agents trained by interaction, with the Q-network pruned *during* RL training.

What `python -m tfsparse.train` runs for a recipe with an `[rl]` section (see
`tfsparse.recipe.RLConfig`). For each seed in `rl.seeds` two agents learn from scratch with
identical hyper-parameters, environment seeds and exploration: a dense one and a sparse one
whose layers selected by `[pruning] policy` are wrapped with TF-MOT `prune_low_magnitude` and
follow the recipe's schedule over the agent's gradient steps (`begin`/`end` are fractions of
them), as in Graesser et al., "The State of Sparse Training in Deep Reinforcement Learning"
(ICML 2022), who find 80-90% sparse agents match dense ones.

The agent (Mnih et al., Nature 2015; Double DQN, van Hasselt et al., AAAI 2016) sees only
observations, its actions and rewards: epsilon-greedy exploration with a linear schedule,
a uniform replay buffer, a target network copied every `target_update` environment steps,
Huber loss, Adam with global-norm clipping. Written here rather than taken from a library
because no maintained DQN runs tf_keras 2 models with TF-MOT wrappers (Stable-Baselines3 is
PyTorch; TF-Agents is tied to Keras 3-era TensorFlow releases and its own networks).

Resumable: every `checkpoint_every` environment steps an agent writes its online and target
networks and optimizer (`tf.train.Checkpoint`, incl. TF-MOT's masks and `pruning_step`), the
replay buffer, the exploration RNG, the environments themselves (pickled: the episodes in
progress continue exactly) and its step counter, then records them in `agent.json`. A killed
run continues from the last checkpoint with `--resume` (or by re-running the pipeline).

Each finished agent is converted to TFLite (fp32, the converter every tfsparse file goes
through) and scored through LiteRT on `eval_episodes` seeded episodes; `metrics.json["rl"]`
holds every seed's dense and sparse score, their mean and spread, the reference policy's score
and the training time. The first seed's agents become the run's `dense.keras` / `sparse.keras`,
which `tfsparse export` ships.

    python -m tfsparse.train models/frozenlake_dqn.toml
    python -m tfsparse.train models/frozenlake_dqn.toml --max-train-examples 20000   # 20k env steps per agent
"""

from __future__ import annotations

import json
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from tfsparse import atomic
from tfsparse.cli import UserError
from tfsparse.datasets import gym_env
from tfsparse.pruning import magnitude as pruning
from tfsparse.run_folder import RunFolder
from tfsparse.zoo import create_model

keras = tf.keras
VARIANTS = ("dense", "sparse")
AGENTS_DIR = "agents"
AGENT_STATE = "agent.json"
# Gradient steps per TensorFlow call; acting uses weights at most this many steps old.
STEPS_PER_CALL = 8


class ReplayBuffer:
    """A uniform ring buffer of (obs, action, reward, next_obs, terminated) as numpy arrays.

    `terminated` (not truncated) stops bootstrapping: a time-limit cut is not a terminal state.
    """

    def __init__(self, capacity: int, obs_dim: int):
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.actions = np.zeros(capacity, np.int32)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.size, self.pos = 0, 0

    def add(self, obs, actions, rewards, next_obs, terminated):
        for row in range(len(actions)):
            i = self.pos
            self.obs[i], self.next_obs[i] = obs[row], next_obs[row]
            self.actions[i], self.rewards[i], self.terminated[i] = actions[row], rewards[row], terminated[row]
            self.pos = (self.pos + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, batch: int):
        idx = rng.integers(0, self.size, batch)
        return self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx], self.terminated[idx]

    def save(self, path: Path):
        with atomic.atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, obs=self.obs, next_obs=self.next_obs, actions=self.actions, rewards=self.rewards,
                         terminated=self.terminated, size=self.size, pos=self.pos)

    def load(self, path: Path):
        with np.load(path) as data:
            for name in ("obs", "next_obs", "actions", "rewards", "terminated"):
                getattr(self, name)[...] = data[name]
            self.size, self.pos = int(data["size"]), int(data["pos"])


def gradient_steps_total(rl, total_steps: int) -> int:
    """How many gradient updates an agent of `total_steps` environment steps makes (the pruning
    schedule's length): `gradient_steps` at every `train_frequency` boundary after `learning_starts`."""
    starts = min(rl.learning_starts, total_steps)
    return rl.gradient_steps * max(0, total_steps // rl.train_frequency - starts // rl.train_frequency)


class Agent:
    """One DQN agent (dense or sparse, one seed), resumable from its folder."""

    def __init__(self, recipe, info: gym_env.EnvInfo, variant: str, seed: int, folder: Path, total_steps: int,
                 verbose: bool = True):
        self.recipe, self.rl, self.info = recipe, recipe.rl, info
        self.variant, self.seed, self.folder = variant, seed, Path(folder)
        self.total_steps, self.verbose = total_steps, verbose
        self.state_path = self.folder / AGENT_STATE
        self.grad_total = gradient_steps_total(self.rl, total_steps)
        if self.grad_total < 1:
            raise UserError(f"rl.total_steps {total_steps} leaves no gradient step after rl.learning_starts "
                            f"{self.rl.learning_starts}")

    # ---- networks -----------------------------------------------------------------------
    def base_model(self):
        args = {**self.info.model_args(), **self.recipe.model.args}
        return create_model(self.recipe.model.name, **args)

    def build(self):
        tf.keras.utils.set_random_seed(self.seed)
        online = self.base_model()
        self.schedule_info = None
        if self.variant == "sparse":
            steps = pruning.schedule_steps(self.recipe.pruning, self.grad_total, self.grad_total)
            online = pruning.apply_pruning(online, self.recipe.pruning, pruning.make_schedule(self.recipe.pruning, steps))
            self.schedule_info = {"kind": self.recipe.pruning.schedule, **steps.__dict__,
                                  "unit": "agent gradient steps"}
        self.online = online
        self.target = self.base_model()
        self.optimizer = keras.optimizers.Adam(self.rl.learning_rate, global_clipnorm=self.rl.max_grad_norm)
        self.pruned = pruning.pruned_layer_names(online) if self.variant == "sparse" else []
        # Target <- online, the pruned kernels times their masks (the wrapper masks its kernel on
        # each call, but a gradient step since then may have moved masked entries).
        pairs = []
        for layer in self.online.layers:
            inner = layer.layer if isinstance(layer, pruning.PruneLowMagnitude) else layer
            tgt = self.target.get_layer(inner.name)
            if isinstance(layer, pruning.PruneLowMagnitude):
                masks = {id(w): m for w, m, _ in layer.pruning_vars}
                pairs += [(t, w, masks.get(id(w))) for t, w in zip(tgt.weights, layer.layer.weights)]
            else:
                pairs += [(t, w, None) for t, w in zip(tgt.weights, layer.weights)]
        self._pairs = pairs
        self._acting_kinds, self._acting_vars = [], []
        for layer in self.online.layers:
            inner = layer.layer if isinstance(layer, pruning.PruneLowMagnitude) else layer
            masks = ({id(w): m for w, m, _ in layer.pruning_vars}
                     if isinstance(layer, pruning.PruneLowMagnitude) else {})
            if isinstance(inner, keras.layers.Normalization):
                self._acting_kinds.append("norm")
                self._acting_vars.append([(inner.mean, None), (inner.variance, None)])
            elif isinstance(inner, keras.layers.Dense):
                act = inner.activation.__name__
                if act not in ("relu", "linear"):
                    raise UserError(f"RL acting supports Dense layers with relu/linear activations, "
                                    f"{inner.name} has {act}")
                self._acting_kinds.append(act)
                # The kernel times its mask: an optimizer step moves masked entries until the
                # wrapper's next forward pass re-applies the mask; the agent acts with the masked net.
                self._acting_vars.append([(inner.kernel, masks.get(id(inner.kernel))), (inner.bias, None)])
            elif not isinstance(inner, keras.layers.InputLayer):
                raise UserError(f"the RL trainer acts with Dense networks (q_network); {inner.name} is "
                                f"{type(inner).__name__}")
        self.step_callback = tfmot.sparsity.keras.UpdatePruningStep()
        self.step_callback.set_model(self.online)
        self.checkpoint = tf.train.Checkpoint(online=self.online, target=self.target, optimizer=self.optimizer)
        gamma, double = float(self.rl.gamma), self.rl.double
        num_actions = self.info.num_actions

        d = self.info.obs_dim
        # One signature (any number of steps, any batch): a new K must not retrace (seconds each).
        @tf.function(input_signature=[tf.TensorSpec([None, None, d], tf.float32), tf.TensorSpec([None, None], tf.int32),
                                      tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None, None, d], tf.float32),
                                      tf.TensorSpec([None, None], tf.float32)])
        def train_steps(obs, actions, rewards, next_obs, terminated):
            """len(actions) gradient steps in one call (a tf.while_loop): calling TensorFlow once
            per step costs milliseconds of overhead on a shared 2-core CPU, more than the step."""
            losses = tf.TensorArray(tf.float32, size=tf.shape(actions)[0])
            for k in tf.range(tf.shape(actions)[0]):
                next_target = self.target(next_obs[k], training=False)
                if double:  # van Hasselt et al.: the online network picks, the target network values
                    best = tf.argmax(self.online(next_obs[k], training=False), axis=1)
                    next_value = tf.reduce_sum(next_target * tf.one_hot(best, num_actions), axis=1)
                else:
                    next_value = tf.reduce_max(next_target, axis=1)
                y = tf.stop_gradient(rewards[k] + gamma * (1.0 - terminated[k]) * next_value)
                with tf.GradientTape() as tape:
                    # training=True: TF-MOT's wrappers advance pruning_step and update masks on schedule.
                    q = tf.reduce_sum(self.online(obs[k], training=True) * tf.one_hot(actions[k], num_actions), axis=1)
                    loss = tf.reduce_mean(tf.keras.losses.huber(y[:, None], q[:, None]))
                grads = tape.gradient(loss, self.online.trainable_variables)
                self.optimizer.apply_gradients(zip(grads, self.online.trainable_variables))
                losses = losses.write(k, loss)
            return losses.stack()

        @tf.function
        def sync_target():
            for t, w, m in self._pairs:
                t.assign(w * m if m is not None else w)

        @tf.function
        def acting_values():
            return [[v * m if m is not None else tf.identity(v) for v, m in group] for group in self._acting_vars]

        self.train_steps, self.sync_target, self._acting_values = train_steps, sync_target, acting_values

    def acting_weights(self):
        """The online network as numpy arrays for acting (`act`), masked kernels included."""
        # One call for all variables: an eager read per variable costs milliseconds on a loaded CPU.
        self.acting = [[v.numpy() for v in group] for group in self._acting_values()]

    def act(self, x: np.ndarray) -> np.ndarray:
        """Q-values of the online network in numpy (the q_network's layers: fixed normalisation, then
        Dense + ReLU, last Dense linear). Exploration runs one forward pass per environment step;
        in numpy that is microseconds, a TensorFlow call is milliseconds on a shared CPU. The
        weights are refreshed after every batch of gradient steps (`steps_per_call`)."""
        for kind, arrays in zip(self._acting_kinds, self.acting):
            if kind == "norm":
                mean, var = arrays
                x = (x - mean) / np.sqrt(np.maximum(var, 1e-7))
            else:
                x = x @ arrays[0] + arrays[1]
                if kind == "relu":
                    x = np.maximum(x, 0)
        return x

    # ---- state --------------------------------------------------------------------------
    def finished(self) -> bool:
        return self.state_path.is_file() and json.loads(self.state_path.read_text()).get("finished", False)

    def save(self, step: int, grad_steps: int, envs, obs, ep_returns, episodes: dict, seconds: float):
        """Checkpoint into a new folder, then point agent.json at it, then drop the old one: a kill
        at any moment leaves agent.json naming a complete checkpoint."""
        self.step_callback.on_epoch_end(-1)  # apply the masks so the saved kernels are sparse
        ckpt_dir = self.folder / f"ckpt-{step}"
        if ckpt_dir.exists():
            shutil.rmtree(ckpt_dir)
        ckpt_dir.mkdir(parents=True)
        self.checkpoint.write(str(ckpt_dir / "networks"))
        self.buffer.save(ckpt_dir / "replay.npz")
        atomic.write_bytes(ckpt_dir / "envs.pkl", pickle.dumps((envs, obs, ep_returns)))
        old = json.loads(self.state_path.read_text()).get("checkpoint") if self.state_path.is_file() else None
        atomic.write_json(self.state_path, {
            "variant": self.variant, "seed": self.seed, "step": step, "gradient_steps": grad_steps,
            "total_steps": self.total_steps, "checkpoint": ckpt_dir.name, "rng": self.rng.bit_generator.state,
            "episodes": episodes, "seconds": round(seconds, 3), "schedule": self.schedule_info, "finished": False})
        if old and old != ckpt_dir.name and (self.folder / old).exists():
            shutil.rmtree(self.folder / old)

    def restore(self):
        state = json.loads(self.state_path.read_text())
        ckpt_dir = self.folder / state["checkpoint"]
        self.checkpoint.read(str(ckpt_dir / "networks")).assert_existing_objects_matched()
        self.buffer.load(ckpt_dir / "replay.npz")
        envs, obs, ep_returns = pickle.loads((ckpt_dir / "envs.pkl").read_bytes())
        self.rng.bit_generator.state = state["rng"]
        return state, envs, obs, ep_returns

    # ---- the loop -----------------------------------------------------------------------
    def train(self) -> dict:
        """Runs (or continues) the agent to `total_steps`; returns its agent.json."""
        rl, info = self.rl, self.info
        self.build()
        self.buffer = ReplayBuffer(min(rl.buffer_size, self.total_steps), info.obs_dim)
        self.rng = np.random.default_rng(self.seed)  # dense and sparse agents of a seed explore alike
        if self.state_path.is_file():
            state, envs, obs, ep_returns = self.restore()
            step, grad_steps, episodes, seconds = state["step"], state["gradient_steps"], state["episodes"], state["seconds"]
            self._log(f"resuming at step {step}/{self.total_steps}")
        else:
            envs = [gym_env.make_env(info.env_id, info.env_kwargs) for _ in range(rl.num_envs)]
            base = self.seed * gym_env.TRAIN_SEED_STRIDE
            obs = [env.reset(seed=base + i)[0] for i, env in enumerate(envs)]
            ep_returns = [0.0] * rl.num_envs
            step, grad_steps, seconds = 0, 0, 0.0
            episodes = {"count": 0, "recent_returns": []}
            self.sync_target()
        self.step_callback.on_train_begin()  # pruning_step -1 -> 0 on a fresh wrapper
        start, last_log = time.perf_counter() - seconds, time.perf_counter()
        n = rl.num_envs
        self.acting_weights()
        pending = 0  # gradient steps due but not yet run (run STEPS_PER_CALL at a time)
        while step < self.total_steps:
            x = info.encode(obs)
            eps = rl.epsilon(step)
            greedy = np.argmax(self.act(x), axis=1)
            explore = self.rng.random(n) < eps
            actions = np.where(explore, self.rng.integers(0, info.num_actions, n), greedy)
            rewards, terms, next_x = np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros_like(x)
            for i, env in enumerate(envs):
                o, r, term, trunc, _ = env.step(int(actions[i]))
                rewards[i], terms[i] = r, float(term)
                next_x[i] = info.encode([o])[0]  # the true next observation, also at an episode's end
                ep_returns[i] += r
                if term or trunc:
                    episodes["count"] += 1
                    episodes["recent_returns"] = (episodes["recent_returns"] + [ep_returns[i]])[-100:]
                    ep_returns[i] = 0.0
                    o, _ = env.reset()  # the env's own seeded RNG continues: deterministic
                obs[i] = o
            self.buffer.add(x, actions, rewards, next_x, terms)
            before, step = step, step + n
            if step >= rl.learning_starts:
                pending += rl.gradient_steps * (step // rl.train_frequency - before // rl.train_frequency)
            pending = min(pending, self.grad_total - grad_steps)
            sync = step // rl.target_update != before // rl.target_update
            save = step // rl.checkpoint_every != before // rl.checkpoint_every or step >= self.total_steps
            if pending >= STEPS_PER_CALL or (pending and (sync or save)):
                batches = [self.buffer.sample(self.rng, rl.batch_size) for _ in range(pending)]
                stacked = [tf.constant(np.stack(column)) for column in zip(*batches)]
                self.step_callback.on_train_batch_begin(-1)  # TF-MOT's per-step hook (a no-op in 0.8.1)
                self.train_steps(*stacked)
                grad_steps += pending
                pending = 0
                self.acting_weights()
            if sync:
                self.sync_target()
            if save:
                self.save(step, grad_steps, envs, obs, ep_returns, episodes, time.perf_counter() - start)
            if self.verbose and time.perf_counter() - last_log > 30:
                last_log = time.perf_counter()
                recent = episodes["recent_returns"]
                self._log(f"step {step}/{self.total_steps}  epsilon {eps:.3f}  episodes {episodes['count']}  "
                          f"mean return (last {len(recent)}) {np.mean(recent) if recent else float('nan'):.3f}  "
                          f"sparsity {self.sparsity():.1%}  {time.perf_counter() - start:.0f} s")
        self.step_callback.on_epoch_end(-1)
        state = json.loads(self.state_path.read_text())
        return state

    def sparsity(self) -> float:
        """Zero fraction of the pruned kernels' current masks (what the network computes with)."""
        masks = [m.numpy() for layer in self.online.layers if isinstance(layer, pruning.PruneLowMagnitude)
                 for _, m, _ in layer.pruning_vars]
        return float(sum(np.sum(m == 0) for m in masks) / sum(m.size for m in masks)) if masks else 0.0

    def _log(self, text: str):
        if self.verbose:
            print(f"[rl {self.variant} seed {self.seed}] {text}", flush=True)


def tflite_predict(data: bytes):
    """`predict(x)` through LiteRT (the file an app ships), batched by resizing the input."""
    from ai_edge_litert.interpreter import Interpreter

    from tfsparse.stderr import captured_stderr

    with captured_stderr():
        interpreter = Interpreter(model_content=data)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    shape = [None]

    def predict(x):
        x = np.asarray(x, np.float32)
        if shape[0] != len(x):
            interpreter.resize_tensor_input(inp["index"], [len(x), *x.shape[1:]])
            interpreter.allocate_tensors()
            shape[0] = len(x)
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"]).copy()

    return predict


class RLTrainer:
    """The `Trainer` of a recipe with `[rl]`: same interface (`validate`, `run`), agents instead of epochs."""

    def __init__(self, recipe, splits, run_dir: Path, strategy, epochs_cap: int | None = None,
                 max_steps: int | None = None, verbose: bool = True):
        if max_steps and max_steps < recipe.rl.total_steps:
            # A capped run (--max-train-examples, the pipeline's --quick) is a smaller agent: the
            # epsilon schedule follows total_steps, and learning must start within the cap.
            import dataclasses
            rl = dataclasses.replace(recipe.rl, total_steps=max_steps,
                                     learning_starts=min(recipe.rl.learning_starts, max_steps // 4),
                                     batch_size=min(recipe.rl.batch_size, recipe.rl.buffer_size))
            recipe = dataclasses.replace(recipe, rl=rl)
        self.recipe, self.splits, self.run_dir, self.verbose = recipe, splits, Path(run_dir), verbose
        self.strategy = strategy
        self.runf = RunFolder(self.run_dir)
        self.info = gym_env.env_info(recipe.rl.env_id, recipe.rl.env_kwargs)
        self.total_steps = recipe.rl.total_steps

    def validate(self, from_model: str | None = None):
        if from_model:
            raise UserError("--from does not apply to an [rl] recipe: its agents learn from scratch by interaction")
        model = create_model(self.recipe.model.name, **{**self.info.model_args(), **self.recipe.model.args})
        pruning.check_policy(model, self.recipe.pruning)
        if self.recipe.pruning.policy not in ("xnnpack", "all"):
            names = [layer.name for layer in model.layers]
            import re
            if not any(re.search(self.recipe.pruning.policy, n) for n in names):
                raise UserError(f"pruning.policy {self.recipe.pruning.policy!r} matches no layer of "
                                f"{self.recipe.model.name} (layers: {', '.join(names)})")
        gradient = gradient_steps_total(self.recipe.rl, self.total_steps)
        if gradient < 1:
            raise UserError(f"rl.total_steps {self.total_steps} leaves no gradient step after "
                            f"rl.learning_starts {self.recipe.rl.learning_starts}")

    def agent(self, variant: str, seed: int) -> Agent:
        folder = self.run_dir / AGENTS_DIR / f"{variant}-seed{seed}"
        return Agent(self.recipe, self.info, variant, seed, folder, self.total_steps, self.verbose)

    def score_agent(self, agent: Agent) -> dict:
        """The agent's greedy policy through its own fp32 TFLite file (LiteRT) on the eval seeds, and
        through Keras on training-seed episodes (the train-vs-test gap of an RL agent)."""
        from tfsparse.exporting.converter import convert

        model = pruning.strip(agent.online) if agent.variant == "sparse" else agent.online
        data = convert(model, "fp32", sparse=agent.variant == "sparse", input_names="state", output_name="q_values")
        rl = self.recipe.rl
        lite = tflite_predict(data)
        keras_predict = tf.function(lambda x: model(x, training=False))
        # The file must act like the network it came from (LiteRT 2.3.0 computed a sparse-stored
        # 2-input layer wrongly, see models/mountaincar_dqn.toml): recorded per agent.
        probe = gym_env.probe_observations(self.info)
        lite_q, keras_q = lite(probe), keras_predict(tf.constant(probe)).numpy()
        parity = {"max_abs_diff": float(np.max(np.abs(lite_q - keras_q))),
                  "action_agreement": float(np.mean(np.argmax(lite_q, 1) == np.argmax(keras_q, 1)))}
        test = gym_env.evaluate(lite, self.info, rl.eval_episodes, rl.eval_seed)
        train = gym_env.evaluate(lambda x: keras_predict(tf.constant(x)).numpy(), self.info, rl.eval_episodes,
                                 agent.seed * gym_env.TRAIN_SEED_STRIDE)
        names = agent.pruned
        return {"test": test, "train": train, "tflite_bytes": len(data), "tflite_vs_keras": parity,
                "sparsity": pruning.overall_sparsity(model, names) if names else 0.0,
                "layer_sparsity": pruning.layer_sparsity(model, names) if names else {}}

    def run(self, state, from_model: str | None = None, one_shot: str | None = None) -> dict:
        rl = self.recipe.rl
        results = state.data.setdefault("rl_agents", {})
        metric = gym_env.task_metric(self.info)
        for seed in rl.seeds:
            for variant in VARIANTS:
                key = f"{variant}-seed{seed}"
                if key in results:
                    continue
                agent = self.agent(variant, seed)
                agent_state = agent.train()
                scores = self.score_agent(agent)
                results[key] = {"variant": variant, "seed": seed, "env_steps": agent_state["step"],
                                "gradient_steps": agent_state["gradient_steps"],
                                "train_seconds": agent_state["seconds"], "schedule": agent_state["schedule"],
                                "training_episodes": agent_state["episodes"]["count"], **scores}
                if seed == rl.seeds[0]:
                    model = pruning.strip(agent.online) if variant == "sparse" else agent.online
                    from tfsparse.training.checkpoints import save_for_inference
                    save_for_inference(model, self.runf.sparse_model if variant == "sparse" else self.runf.dense_model)
                    if variant == "sparse":
                        state.data["pruned_layers"] = agent.pruned
                        state.data["schedule"] = agent_state["schedule"]
                state.data["seconds"].setdefault("agents", []).append(agent_state["seconds"])
                state.save()
                if self.verbose:
                    print(f"[rl {variant} seed {seed}] LiteRT {metric} {scores['test'].get(metric)} on "
                          f"{scores['test']['episodes']} episodes ({scores['test']['eval_seeds']}), train-seed "
                          f"episodes {scores['train'].get(metric)}, sparsity {scores['sparsity']:.1%}, "
                          f"{agent_state['seconds']:.0f} s", flush=True)
        first = rl.seeds[0]
        dense_extra, sparse_extra = self._keras_extra()
        for phase in ("dense", "pruning"):
            if not state.finished(phase):
                state.mark_finished(phase, **({"dense_extra": dense_extra} if phase == "dense" else
                                              {"sparse_extra": sparse_extra}))
        metrics = self.metrics(state, results, metric, first)
        atomic.write_json(self.runf.metrics, metrics)
        return metrics

    def _keras_extra(self):
        out = []
        for path in (self.runf.dense_model, self.runf.sparse_model):
            model = keras.models.load_model(path, compile=False)
            predict = tf.function(lambda x, m=model: m(x, training=False))
            out.append(self.splits.extra_metrics(lambda x: predict(tf.constant(np.asarray(x, np.float32))).numpy()))
        return out

    def metrics(self, state, results: dict, metric: str, first: int) -> dict:
        rl = self.recipe.rl
        summary = {}
        for variant in VARIANTS:
            runs = [results[f"{variant}-seed{s}"] for s in rl.seeds]
            test = [r["test"][metric] for r in runs]
            train = [r["train"][metric] for r in runs]
            summary[variant] = {"per_seed": dict(zip(map(str, rl.seeds), test)),
                                "mean": round(float(np.mean(test)), 4), "std": round(float(np.std(test)), 4),
                                "min": float(np.min(test)), "max": float(np.max(test)),
                                "train_mean": round(float(np.mean(train)), 4),
                                "mean_return": round(float(np.mean([r["test"]["mean_return"] for r in runs])), 4),
                                "train_seconds_mean": round(float(np.mean([r["train_seconds"] for r in runs])), 1)}
        dense_first, sparse_first = results[f"dense-seed{first}"], results[f"sparse-seed{first}"]
        sparse_model = keras.models.load_model(self.runf.sparse_model, compile=False)
        names = state.data["pruned_layers"]
        total = sum(int(np.prod(w.shape)) for w in sparse_model.weights)
        zeros = sum(int(np.sum(w.numpy() == 0)) for w in sparse_model.weights)
        ref_key = f"reference_{metric}"
        reference = state.data["dense_extra"].get(ref_key)
        dense_test, sparse_test = dense_first["test"][metric], sparse_first["test"][metric]
        return {
            "recipe": self.recipe.name, "model": self.recipe.model.name,
            # The training metric of an RL run is the task's own score (no labels to be accurate on).
            "metric": metric,
            "dense_score": dense_test, "sparse_score": sparse_test,
            "dense_train_score": dense_first["train"][metric], "sparse_train_score": sparse_first["train"][metric],
            "generalisation": {
                "split": {"train": "greedy episodes on the training environment seeds",
                          "test": f"greedy episodes on the evaluation seeds {rl.eval_seed}.."},
                "dense": {"train": dense_first["train"][metric], "test": dense_test,
                          "gap": round(dense_first["train"][metric] - dense_test, 6)},
                "sparse": {"train": sparse_first["train"][metric], "test": sparse_test,
                           "gap": round(sparse_first["train"][metric] - sparse_test, 6)}},
            "extra": {"dense": state.data["dense_extra"], "sparse": state.data["sparse_extra"]},
            "rl": {"algorithm": "Double DQN" if rl.double else "DQN", "env": self.info.env_id,
                   "env_kwargs": self.info.env_kwargs, "metric": metric, "seeds": rl.seeds,
                   "total_env_steps": self.total_steps,
                   "gradient_steps": gradient_steps_total(rl, self.total_steps),
                   "eval": f"greedy policy through each agent's fp32 TFLite file (LiteRT), {rl.eval_episodes} "
                           f"episodes seeded {rl.eval_seed}..{rl.eval_seed + rl.eval_episodes - 1}",
                   "reference": {"policy": state.data["dense_extra"].get("reference_policy"), metric: reference},
                   "summary": summary, "agents": results},
            "target_sparsity": self.recipe.pruning.final_sparsity,
            "overall_sparsity": pruning.overall_sparsity(sparse_model, names),
            "layer_sparsity": pruning.layer_sparsity(sparse_model, names),
            "parameters": total, "nonzero_parameters": total - zeros,
            "schedule": state.data["schedule"],
            "epochs": {},
            "train_examples": self.total_steps,
            "strategy": type(self.strategy).__name__.lstrip("_"),
            "replicas": int(self.strategy.num_replicas_in_sync),
            "seconds_per_epoch": {"dense": None, "pruned": None},
            "seconds_per_agent": {v: summary[v]["train_seconds_mean"] for v in VARIANTS},
        }
