"""`robot-rl bench finetune [json=<file>] [out=<dir>] [quick=true] [finetune.obs=state|image] [finetune.<option>=...]`

Fine-tuning methods side by side on the twin (CPU; `obs`: state observations by default, image: cameras +
proprio, passed as obs= to every stage), per task of `tasks`
(default lift and insert; a Gymnasium id with the `gym` option, docs/environments.md): one mixed-quality
demo set (`collect noise=0.3`), one BC base trained on it, then for `seeds` seeds (a count, or a list:
one job's share) and the same online budget (`env_steps`, evaluated every `eval_every` steps on the same fixed seeds):
    bc                 the BC base alone (its success at 0 env steps)
    residual           robot-rl finetune algo=residual (residual RL on the frozen base)
    filtered_bc        robot-rl finetune algo=filtered_bc (the default: the policy imitates its own successes)
    ppo, dsrl          robot-rl finetune algo=ppo | dsrl
    offline_residual   algo=offline rounds, then residual on their policy; the rounds' env steps count
    rlpd               algo=rlpd: from scratch with the demos in the batch
An algorithm this version does not have (robot_rl.learning.rl.algorithms) is reported "not available";
a run that raises, "failed".
Rows per task (suffix _<task>): final_success_<m> (mean over seeds; _vs_bc ratio), offline_success_vs_bc
(the offline rounds' policy alone, mean over the offline_residual seeds), env_steps_to_80_<m>, _90_
and _95_ (median over seeds of the first evaluation at or above the threshold; null when most seeds
never get there) with the real-robot minutes at the policy rate, and env_steps_to_90_<m>_vs_rlpd for
filtered_bc and residual (ratio = speed-up; where most RLPD seeds never got there, _vs_rlpd_at_least_ rows
give the lower bound: the env steps every RLPD seed ran over the method's). Writes into out (default runs/bench/finetune/<stamp>, or beside json=): every run's
directory, finetune_curves.png (success vs env steps, mean +- std over seeds), finetune_curves.json
(raw curves) and the table. With heldout_episodes > 0 (default 50), every final policy (and the BC base)
is also evaluated on that many episodes on seeds 200000 + i, which no curve uses: rows
heldout_success_<m>_vs_bc (mean over seeds) with the Wilson 95 % interval of all seeds' held-out episodes
pooled (heldout_success_<m>_ci95_low/high), the finer measure (a 20-episode evaluation's standard error
is about 10 points). Finished runs are reused when the same out is given again; with
`finetune.report_only=true` nothing runs: the table and plot come from the finished runs in out, and
a run that is missing or short of the budget is reported "not run" (e.g. seeds run as separate jobs).
Options and their defaults: FinetuneBenchConfig below.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.core.config import dataclass_from_dict, to_plain
from robot_rl.core.errors import ConfigError
from robot_rl.core.results import BenchRow, format_bench_table, success_interval, write_bench_json
from robot_rl.learning.rl.algorithms import ALGORITHMS
from robot_rl.learning.rl.online import OnlineConfig

NAME = "finetune"
METHODS = ("bc", "residual", "filtered_bc", "ppo", "dsrl", "offline_residual", "rlpd")
THRESHOLDS = (0.8, 0.9, 0.95)
EVAL_SEED = OnlineConfig.eval_seed   # the finetune command's default online.eval_seed; `eval` uses the same seeds
HELDOUT_SEED = 200_000       # final policies' held-out evaluation: seeds no learning curve uses


@dataclass
class FinetuneBenchConfig:
    """`robot-rl bench finetune`'s options (configs/bench.yaml's `finetune:` section): success vs env steps of
    each fine-tuning method (twin, CPU)."""

    tasks: tuple[str, ...] = ("lift", "insert")   # twin tasks, or Gymnasium ids (see gym)
    obs: str = "state"                # every stage's obs=: state (proprio + the twin's privileged task_state) |
                                      # image (proprio + cameras: demos with cameras, an image BC base)
    methods: tuple[str, ...] = METHODS
    seeds: Any = 3                    # fine-tuning seeds per method, or a list of seeds (one job's share);
                                      # one demo set and one BC base per task
    demos: int = 50                   # scripted demos per task, mixed quality: collect noise=
    noise: float = 0.3
    env_steps: int = 20_000           # online budget of every run (offline_residual: the offline rollouts count in it)
    eval_every: int = 4_000
    eval_episodes: int = 20           # fixed seeds EVAL_SEED + i for every method
    task_params: dict = field(default_factory=dict)   # overrides of the tasks' params, e.g. {time_limit: 1.0}
    gym: dict = field(default_factory=dict)   # a task that is not a twin task is a Gymnasium id (task=gym): {module,
                                      # kwargs, max_episode_steps, rate_hz, expert: <module>:<attr> for its demos}
    train: tuple[str, ...] = ("train.steps=8000", "train.success_only=true", "train.batch_size=128",
                              "train.eval_every=1000", "train.eval_episodes=20")
                                      # the BC base: about 8 CPU-minutes per task; the best checkpoint on seeds 50000+
    overrides: dict = field(default_factory=dict)   # extra `robot-rl finetune` overrides per algorithm; CLI:
                                      # '+finetune.overrides.residual=["residual.utd=8"]'
    heldout_episodes: int = 50        # final policies and the BC base on seeds HELDOUT_SEED + i (no curve uses them)
    report_only: bool = False         # true: run nothing; table and plot from the finished runs in out
    quick_sizes: dict = field(default_factory=lambda: {   # quick=true: a smoke test (tiny nets, 1 s episodes)
        "tasks": ["lift"], "seeds": 1, "demos": 2, "env_steps": 40, "eval_every": 40, "eval_episodes": 1,
        "heldout_episodes": 1, "task_params": {"time_limit": 1.0},
        "train": ["train.steps=10", "train.eval_every=0", "train.batch_size=16", "train.num_workers=0",
                  "train.warmup_steps=2", "model.mlp_hidden_dim=32", "model.mlp_num_blocks=1", "model.state_dims=[32]",
                  "model.step_embed_dim=16", "spec.horizon=8", "spec.n_action_steps=4"],
        "overrides": {
            "residual": ["residual.critic_heads=2", "residual.critic_hidden=[32,32]", "residual.actor_hidden=[32,32]",
                         "residual.batch_size=32", "residual.warmup_env_steps=20", "residual.utd=0.5",
                         "residual.log_every=0"],
            "filtered_bc": ["filtered_bc.batch_size=16", "filtered_bc.utd=0.5"],
            "rlpd": ["rlpd.critic_heads=2", "rlpd.critic_hidden=[32,32]", "rlpd.actor_hidden=[32,32]",
                     "rlpd.batch_size=32", "rlpd.warmup_env_steps=20", "rlpd.utd=0.5", "rlpd.log_every=0"],
            "offline": ["offline.critic_steps=30", "offline.critic_hidden=[32,32]", "offline.batch_size=32",
                        "offline.improve_steps=4", "offline.improve_batch=16", "offline.gate_every=2",
                        "offline.chain_steps=5", "offline.dynamics_models=2", "offline.dynamics_hidden=[32]",
                        "offline.dynamics_steps=20", "offline.ope_horizon=3", "offline.ope_starts=8",
                        "offline.best_of_n=0", "offline.rollout_episodes=1"]}})

    def __post_init__(self) -> None:
        from robot_rl.learning.spec_builder import OBS_KINDS

        if self.obs not in OBS_KINDS:
            raise ConfigError(f"bench finetune.obs={self.obs}: expected one of {', '.join(OBS_KINDS)}")
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ConfigError(f"bench finetune.methods: unknown {unknown}; known {list(METHODS)}")

    def quick(self) -> "FinetuneBenchConfig":
        """These options with quick_sizes applied."""
        return dataclass_from_dict(FinetuneBenchConfig, asdict(self) | to_plain(self.quick_sizes),
                                   "bench finetune.quick_sizes")


@dataclass
class Run:
    """One method on one task and seed: its curve (env steps, success) or why there is none."""

    method: str
    seed: int
    curve: list[tuple[int, float]] = field(default_factory=list)
    status: str = "ok"               # ok | not available | failed | not run (report_only)
    reason: str = ""
    offline_success: float | None = None   # offline_residual: the offline rounds' policy, before the residual
    heldout_success: float | None = None   # the final policy on heldout_episodes held-out seeds (None: not run)


class NotRun(Exception):
    """report_only: a stage the bench would have to run."""


def algorithm_available(algo: str) -> tuple[bool, str]:
    """Whether `robot-rl finetune algo=<algo>` exists in this version (robot_rl.learning.rl.algorithms)."""
    if algo not in ALGORITHMS:
        return False, f"algo={algo} is not in this version of robot_rl (ALGORITHMS: {', '.join(ALGORITHMS)})"
    return True, ""


def steps_to(curve: list[tuple[int, float]], threshold: float) -> float:
    """Env steps of the first evaluation with success >= threshold (nan: never)."""
    for steps, success in curve:
        if success is not None and success >= threshold - 1e-9:
            return float(steps)
    return float("nan")


def median_reached(values: list[float]) -> float:
    """Median over seeds where a seed that never reached counts as infinitely slow (nan if most never did)."""
    v = np.sort(np.where(np.isnan(values), np.inf, values))
    m = float(np.median(v)) if len(v) else float("inf")
    return m if np.isfinite(m) else float("nan")


class FinetuneBench:
    def __init__(self, cfg: FinetuneBenchConfig, out: str | Path | None = None, json_path: str | None = None,
                 device: str = "auto", quick: bool = False) -> None:
        """cfg: the options (quick: with their quick_sizes applied); out: where the runs go (default beside
        json_path, else runs/bench/finetune/<UTC stamp>)."""
        self.cfg = cfg.quick() if quick else cfg
        self.device = str(device or "auto")
        self.quick = quick
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        self.out = (Path(out) if out else
                    (Path(json_path).parent / NAME if json_path else Path("runs/bench/finetune") / stamp))
        self.task_args = [f"task.params.{k}={v}" for k, v in (self.cfg.task_params or {}).items()]

    def task_sel(self, task: str, stage: str = "") -> list[str]:
        """The overrides selecting `task` in a stage: a twin task by name, any other name as a Gymnasium id with
        the `gym` option's module, kwargs, max_episode_steps, rate_hz and (collect) expert."""
        from robot_rl.sim.gym_tasks import task_overrides
        from robot_rl.sim.tasks import TASKS

        if task in TASKS:
            return [f"task={task}", *self.task_args]
        g = dict(self.cfg.gym or {})
        task_cfg = {"name": "gym", "id": task} | {k: g.get(k) for k in ("module", "kwargs", "max_episode_steps",
                                                                        "rate_hz")}
        args = task_overrides(task_cfg)
        if stage == "collect":
            if not g.get("expert"):
                raise ConfigError(f"bench finetune: task {task} is a Gymnasium id; its demos need an expert: "
                                  "finetune.gym.expert=<module>:<attr> (docs/environments.md)")
            args += ["source=expert", f"expert={g['expert']}"]
        elif stage == "train":
            from robot_rl.sim.gym_tasks import gym_state_streams, state_override

            args += [state_override(gym_state_streams(task_cfg))]
        elif stage == "residual":   # the default bounds name the twin's 7-D action's dimensions
            args += ["residual.dim_scales=null"]
        return args

    @property
    def seeds(self) -> list[int]:
        seeds = self.cfg.seeds
        return [int(x) for x in seeds] if isinstance(seeds, (list, tuple)) else list(range(int(seeds)))

    # ---- running the stages through the CLI (the same dispatch a user runs) -----------------------
    def _cli(self, args: list[str]) -> None:
        """Run one stage (collect, train, eval, finetune); with report_only, NotRun instead."""
        if self.cfg.report_only:
            raise NotRun(f"report_only: not run: robot-rl {' '.join(map(str, args))}")
        from robot_rl.cli import main

        code = main([str(a) for a in args])
        if code != 0:
            raise RuntimeError(f"robot-rl {' '.join(map(str, args))}: exit status {code}")

    @staticmethod
    def _results(path: Path) -> dict | None:
        f = path / "results.json"
        return json.loads(f.read_text()) if f.is_file() else None

    def _stage(self, out: Path, args: list, finished=lambda results: True) -> dict:
        """The results.json of the stage writing to `out`; runs `robot-rl args` first unless a finished one
        is there (one that `finished` accepts). report_only: NotRun instead of running."""
        results = self._results(out)
        if results is None or not finished(results):
            self._cli(args)
            results = self._results(out)
        return results

    def _eval(self, policy: Path | str, task: str, episodes: int, seed_offset: int, out: Path) -> float:
        """Success rate of `robot-rl eval` on seeds seed_offset + i (reused when out has it)."""
        return float(self._stage(out, ["eval", f"policy={policy}", *self.task_sel(task), f"obs={self.cfg.obs}",
                                       f"episodes={episodes}", f"seed_offset={seed_offset}", f"out={out}",
                                       f"device={self.device}"])["success_rate"])

    def prepare(self, task: str) -> tuple[Path, Path]:
        """The task's demo store and BC base (made once, reused by every method and seed)."""
        d = self.out / task
        store = d / "demos.zarr"
        self._stage(d / "collect", ["collect", *self.task_sel(task, "collect"), f"episodes={self.cfg.demos}",
                                    f"noise={self.cfg.noise}", f"store={store}", f"out={d / 'collect'}",
                                    f"obs={self.cfg.obs}", "progress=false"])
        self._stage(d / "bc", ["train", f"store={store}", *self.task_sel(task, "train"), f"obs={self.cfg.obs}",
                               f"out={d / 'bc'}", f"train.device={self.device}", *self.cfg.train])
        return store, d / "bc" / "checkpoints" / "best"

    def _finetune(self, algo: str, base: Path, store: Path, task: str, seed: int, out: Path, env_steps: int) -> dict:
        return self._stage(out, ["finetune", f"algo={algo}", f"policy={base}", f"store={store}",
                                 *self.task_sel(task, algo), f"obs={self.cfg.obs}", f"seed={seed}", f"out={out}", f"device={self.device}",
                                 f"online.env_steps={env_steps}", f"online.eval_every={self.cfg.eval_every}",
                                 f"online.eval_episodes={self.cfg.eval_episodes}", f"online.eval_seed={EVAL_SEED}",
                                 *(self.cfg.overrides or {}).get(algo, [])],
                           finished=lambda results: results.get("env_steps", 0) >= env_steps)

    def heldout(self, task: str, policy: Path | str, out: Path) -> float | None:
        """The final policy's success on heldout_episodes episodes on seeds HELDOUT_SEED + i (None: off, or
        report_only and not evaluated yet)."""
        n = int(self.cfg.heldout_episodes or 0)
        if n <= 0:
            return None
        try:
            return self._eval(policy, task, n, HELDOUT_SEED, out)
        except NotRun:
            return None

    def bc_curve(self, task: str, base: Path) -> list[tuple[int, float]]:
        return [(0, self._eval(base, task, int(self.cfg.eval_episodes), EVAL_SEED, self.out / task / "bc_eval"))]

    def run_method(self, method: str, task: str, store: Path, base: Path, seed: int) -> Run:
        algos = {"bc": [], "offline_residual": ["offline", "residual"]}.get(method, [method])
        for algo in algos:
            ok, why = algorithm_available(algo)
            if not ok:
                return Run(method, seed, status="not available", reason=why)
        out = self.out / task / method / f"seed{seed}"
        budget = int(self.cfg.env_steps)
        try:
            if method == "bc":
                return Run(method, seed, self.bc_curve(task, base),
                           heldout_success=self.heldout(task, base, self.out / task / "bc_heldout"))
            if method != "offline_residual":
                r = self._finetune(method, base, store, task, seed, out, budget)
                return Run(method, seed, [(p["env_steps"], p["success_rate"]) for p in r["curve"]],
                           heldout_success=self.heldout(task, out / "policy", out / "heldout"))
            off = self._finetune("offline", base, store, task, seed, out / "offline", 0)
            used = int(off.get("env_steps") or 0)             # rollouts the offline rounds collected
            start = [(0, self.bc_curve(task, base)[0][1])]
            offline = None if off.get("success_rate") is None else float(off["success_rate"])
            if offline is not None:
                start.append((used, offline))
            r = self._finetune("residual", Path(off["policy"]), store, task, seed, out / "residual",
                               max(0, budget - used))
            return Run(method, seed, start + [(used + p["env_steps"], p["success_rate"]) for p in r["curve"]],
                       offline_success=offline,
                       heldout_success=self.heldout(task, out / "residual" / "policy", out / "heldout"))
        except NotRun as e:
            return Run(method, seed, status="not run", reason=str(e))
        except Exception as e:  # noqa: BLE001 - one broken method must not lose the others' numbers
            import traceback

            traceback.print_exc()
            return Run(method, seed, status="failed", reason=f"{type(e).__name__}: {e}")

    def run(self) -> dict[str, list[Run]]:
        runs: dict[str, list[Run]] = {}
        for task in self.cfg.tasks:
            try:
                store, base = self.prepare(task)
            except NotRun as e:
                raise ConfigError(f"bench finetune: {self.out / task} has no finished demo set and BC base "
                                  f"({e})") from None
            runs[task] = []
            for method in self.cfg.methods:
                for seed in [0] if method == "bc" else self.seeds:
                    run = self.run_method(method, task, store, base, seed)
                    runs[task].append(run)
                    if run.status == "not available":
                        print(f"bench finetune: {method} not available: {run.reason}")
                        break
        return runs


# ---- rows, plot, report ------------------------------------------------------------------------------
def policy_rate_hz(base: Path) -> float:
    from robot_rl.core.checkpoint import load_checkpoint

    return float(load_checkpoint(base).config["policy"]["spec"]["rate_hz"])


def rows_for(task: str, runs: list[Run], rate_hz: float, heldout_episodes: int = 0) -> list[BenchRow]:
    ok = {}
    for r in runs:
        if r.status == "ok" and r.curve:
            ok.setdefault(r.method, []).append(r)
    rows: list[BenchRow] = []
    final = {m: float(np.mean([rs.curve[-1][1] for rs in v])) for m, v in ok.items()}
    reach = {(m, th): median_reached([steps_to(rs.curve, th) for rs in v]) for m, v in ok.items() for th in THRESHOLDS}
    for m in ok:
        if m == "bc" or "bc" not in final:
            rows.append(BenchRow(f"final_success_{m}_{task}", final[m], "fraction"))
        else:
            rows.append(BenchRow.compare(f"final_success_{m}_vs_bc_{task}", final[m], "fraction",
                                         f"final_success_bc_{task}", final["bc"], higher_is_better=True))
        for th in THRESHOLDS:
            s = reach[(m, th)]
            rows.append(BenchRow(f"env_steps_to_{int(th * 100)}_{m}_{task}", s, "env steps"))
            rows.append(BenchRow(f"robot_minutes_to_{int(th * 100)}_{m}_{task}", s / rate_hz / 60.0, "min"))
    offline = [r.offline_success for r in ok.get("offline_residual", []) if r.offline_success is not None]
    if offline and "bc" in final:      # the offline rounds alone against BC (mixed-quality data)
        rows.append(BenchRow.compare(f"offline_success_vs_bc_{task}", float(np.mean(offline)), "fraction",
                                     f"final_success_bc_{task}", final["bc"], higher_is_better=True))
    heldout = {m: [r.heldout_success for r in v if r.heldout_success is not None] for m, v in ok.items()}
    for m, values in heldout.items():     # the final policies on held-out seeds, against the BC base's
        if m != "bc" and values and heldout.get("bc"):
            rows.append(BenchRow.compare(f"heldout_success_{m}_vs_bc_{task}", float(np.mean(values)), "fraction",
                                         f"heldout_success_bc_{task}", heldout["bc"][0], higher_is_better=True))
        if values and heldout_episodes > 0:   # Wilson 95 % interval over every seed's held-out episodes pooled
            n = heldout_episodes * len(values)
            low, high = success_interval(round(sum(values) * heldout_episodes), n)
            rows += [BenchRow(f"heldout_success_{m}_ci95_low_{task}", low, f"fraction of {n}"),
                     BenchRow(f"heldout_success_{m}_ci95_high_{task}", high, f"fraction of {n}")]
    for m in ("filtered_bc", "residual"):     # speed-up of the online methods over RLPD from scratch
        if m not in ok or "rlpd" not in ok:
            continue
        rlpd_ran = min(rs.curve[-1][0] for rs in ok["rlpd"])     # env steps every RLPD seed ran
        for th in THRESHOLDS:
            pct = int(th * 100)
            rows.append(BenchRow.compare(f"env_steps_to_{pct}_{m}_vs_rlpd_{task}", reach[(m, th)],
                                         "env steps", f"env_steps_to_{pct}_rlpd_{task}", reach[("rlpd", th)],
                                         higher_is_better=False))
            if np.isnan(reach[("rlpd", th)]) and np.isfinite(reach[(m, th)]):
                # most RLPD seeds never got there: the speed-up is at least the steps they ran over ours
                rows.append(BenchRow.compare(f"env_steps_to_{pct}_{m}_vs_rlpd_at_least_{task}", reach[(m, th)],
                                             "env steps", f"env_steps_rlpd_ran_below_{pct}_{task}", rlpd_ran,
                                             higher_is_better=False))
    return rows


def plot_curves(runs: dict[str, list[Run]], path: Path, budget: int, heldout_episodes: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(runs)
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    grid = np.linspace(0, budget, 101)
    for ax, task in zip(axes[0], tasks):
        by_method: dict[str, list[Run]] = {}
        for r in runs[task]:
            if r.status == "ok" and r.curve:
                by_method.setdefault(r.method, []).append(r)
        for m, rs in by_method.items():
            heldout = [r.heldout_success for r in rs if r.heldout_success is not None]
            if m == "bc":
                ax.axhline(rs[0].curve[0][1], color="gray", ls="--", label="bc base")
                if heldout:
                    ax.plot([budget], heldout[:1], "*", ms=11, color="gray", label=f"held-out ({heldout_episodes} episodes)")
                continue
            ys = np.stack([np.interp(grid, [p[0] for p in r.curve], [p[1] for p in r.curve]) for r in rs])
            mean, std = ys.mean(0), ys.std(0)
            (line,) = ax.plot(grid, mean, label=f"{m} ({len(rs)} seeds)")
            ax.fill_between(grid, mean - std, mean + std, alpha=0.2)
            if heldout:                 # the final policies on held-out seeds, at the end of the budget
                ax.plot([budget], [float(np.mean(heldout))], "*", ms=11, color=line.get_color())
        for th in THRESHOLDS:
            ax.axhline(th, color="k", lw=0.5, ls=":")
        ax.set(title=task, xlabel="environment steps", ylabel="success rate", ylim=(-0.02, 1.02),
               xlim=(0, budget * 1.03))
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(cfg) -> int:
    """cfg: configs/bench.yaml's common keys (out, json, device, quick, ...) and its finetune: section, as
    robot_rl.bench.all.section_config gives them."""
    plain = to_plain(cfg)
    names = {f.name for f in fields(FinetuneBenchConfig)}
    options = dataclass_from_dict(FinetuneBenchConfig, {k: v for k, v in plain.items() if k in names}, "bench finetune")
    bench = FinetuneBench(options, plain["out"], plain["json"], plain["device"], plain["quick"])
    bench.out.mkdir(parents=True, exist_ok=True)
    runs = bench.run()
    rows: list[BenchRow] = []
    for task, task_runs in runs.items():
        rows += rows_for(task, task_runs, policy_rate_hz(bench.out / task / "bc" / "checkpoints" / "best"),
                         bench.cfg.heldout_episodes)
    raw = {task: [{"method": r.method, "seed": r.seed, "status": r.status, "reason": r.reason,
                   "curve": [list(p) for p in r.curve]}
                  | {k: getattr(r, k) for k in ("offline_success", "heldout_success") if getattr(r, k) is not None}
                  for r in rs] for task, rs in runs.items()}
    (bench.out / "finetune_curves.json").write_text(json.dumps({"options": to_plain(asdict(bench.cfg)), "runs": raw}, indent=1))
    plot = plot_curves(runs, bench.out / "finetune_curves.png", int(bench.cfg.env_steps),
                       int(bench.cfg.heldout_episodes or 0))
    table = format_bench_table(NAME, rows)
    missing = [f"{t}/{r.method}: {r.status} ({r.reason})" for t, rs in runs.items() for r in rs if r.status != "ok"]
    (bench.out / "finetune_table.txt").write_text(table + "\n" + "\n".join(missing) + "\n")
    print(table)
    for line in missing:
        print(line)
    print(f"curves: {plot}; runs in {bench.out}")
    if plain["json"]:
        write_bench_json(plain["json"], NAME, rows)
        print(f"wrote {plain['json']}")
    return 0
